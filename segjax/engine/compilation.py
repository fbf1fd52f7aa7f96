"""JAX's persistent compilation cache, on by default: a resumed run, `--eval_only`, predict or a
benchmark of shapes compiled before loads XLA's executables from disk instead of compiling again.

The folder is machine state, not a run's: `--compilation_cache=DIR` or SEGJAX_COMPILATION_CACHE
moves it, "off" turns it off; else JAX's own JAX_COMPILATION_CACHE_DIR, else ~/.cache/segjax/jax
(under $XDG_CACHE_HOME when set), outside every workdir. XLA keys each executable by the program,
the devices and the jax and jaxlib versions, so a stale entry is never used. The same folder keeps
segjax.engine.programs's stored steps, on and off with it.
"""
import os

ENV = "SEGJAX_COMPILATION_CACHE"
OFF = ("off", "none", "")


def define_flag():
  """--compilation_cache, for a program's flags."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  return flags.DEFINE_string("compilation_cache", None, "Folder of the persistent compilation cache, or off. "
                             f"Default: {ENV}, else JAX_COMPILATION_CACHE_DIR, else ~/.cache/segjax/jax.")


def default_dir():
  return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "segjax", "jax")


def enable(path=None):
  """Turns the cache on in `path` (None: as the module says) before anything compiles; returns the
  folder, or None when turned off."""
  import jax  # pylint: disable=g-import-not-at-top  (segjax.main defines the flag before JAX starts)
  from segjax.engine import programs  # pylint: disable=g-import-not-at-top  (it imports JAX)
  if path is None:
    path = os.environ.get(ENV, os.environ.get("JAX_COMPILATION_CACHE_DIR") or default_dir())
  if path.strip().lower() in OFF:
    jax.config.update("jax_enable_compilation_cache", False)
    programs.use(None)
    return None
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", os.path.abspath(os.path.expanduser(path)))
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    # Every executable, however quick to compile (JAX's default keeps those over 1 s): a small step
    # on a CPU compiles in about a second, and a start compiles many.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  programs.use(jax.config.jax_compilation_cache_dir)
  return jax.config.jax_compilation_cache_dir


class Counter:
  """Counts compilations that used the cache, those it answered and the programs loaded untraced
  (programs.py), from jax.monitoring's events, so a log can say where a start's steps came from."""

  def __init__(self):
    import jax  # pylint: disable=g-import-not-at-top
    from segjax.engine import programs  # pylint: disable=g-import-not-at-top
    self.requests = self.hits = self.loaded = 0
    self._loaded = programs.LOADED
    jax.monitoring.register_event_listener(self._event)
    self._listening = True

  def _event(self, event, **_):
    if event == "/jax/compilation_cache/compile_requests_use_cache":
      self.requests += 1
    elif event == "/jax/compilation_cache/cache_hits":
      self.hits += 1
    elif event == self._loaded:
      self.loaded += 1

  def close(self):
    """Stops counting; again is a no-op."""
    import jax  # pylint: disable=g-import-not-at-top
    if self._listening:
      jax.monitoring.unregister_event_listener(self._event)
      self._listening = False

  def describe(self):
    """E.g. "2 programs loaded without tracing, 2 of 2 compilations from the persistent cache in DIR"."""
    import jax  # pylint: disable=g-import-not-at-top
    if not jax.config.jax_enable_compilation_cache or not jax.config.jax_compilation_cache_dir:
      return "the persistent compilation cache is off"
    return (f"{self.loaded} programs loaded without tracing, {self.hits} of {self.requests} compilations "
            f"from the persistent cache in {jax.config.jax_compilation_cache_dir}")
