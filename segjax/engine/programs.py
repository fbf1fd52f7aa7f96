"""Compiled steps kept on disk and found again without tracing them.

XLA's persistent cache (compilation.py) spares a warm start the compiling, not the tracing and
lowering that make its key: 3.4 of the 13.9 s configs/query_panoptic.py took to its first step.
Here a step's executable is stored under what it was traced from: its name, the run's config, its
arguments' shapes, dtypes and shardings, the devices, jax's settings and the JAX_, XLA_ and SEGJAX_
environment variables. It is loaded only while every Python file that was loaded when it was
stored (segjax's, a user's own heads, jax's, flax's...) is unchanged, by size and modification
time, and no module outside Python's own folders and site-packages (segjax's, the user's) is loaded
now that was not then; and nothing traced after a loaded file changed in this process's lifetime
is stored. Code with no file to compare (python -c, a notebook's cells) turns it off. Not seen: a
function patched at run time, and values a user's own code takes from outside the config (its own
flags) and bakes into a registered head.

Only what XLA compiled in this process is stored: an executable XLA's CPU backend loaded from its
cache saves without some of its kernels (jaxlib 0.10: "Function ... not found" once loaded again).
So a start whose program is not stored but is in XLA's cache (a file edited, a config value that
leaves the program as it was) traces, lowers and loads it from there as before, and stores nothing.

On with the persistent cache, in its folder (`programs/`), and read only from a folder this user
owns and no one else can write to: loading a program may run its code.
"""
import hashlib
import json
import os
import pickle
import sys
import sysconfig
import tempfile
import time

from absl import logging
import jax
from jax.experimental import serialize_executable

LOADED = "/segjax/programs/loaded"  # the jax.monitoring event of each program loaded, compilation.Counter's

_folder = None
_STARTED = time.time_ns()  # what was traced from a file changed since is not stored


def use(cache_dir):
  """Keeps programs under `cache_dir` (the persistent cache's folder); None: nowhere."""
  global _folder
  _folder = os.path.join(cache_dir, "programs") if cache_dir else None


def cached(name, make_jitted, context):
  """A function that calls what `make_jitted()` (a jax.jit function, made only when needed) would:
  on each new signature of its arguments it loads the executable stored under `name`, `context`
  (a string: what else the program depends on, e.g. the config's JSON) and that signature, or
  compiles it and stores it."""
  if _folder is None or not getattr(sys.modules["__main__"], "__file__", None) or jax.process_count() > 1:
    return _Lazy(make_jitted)  # several processes: each would load alone what all compile together
  return _Cached(_folder, name, make_jitted, context)


class _Lazy:
  """The jax.jit function, made at its first use."""

  def __init__(self, make_jitted):
    self._make, self._made = make_jitted, None

  def jitted(self):
    if self._made is None:
      self._made = self._make()
    return self._made

  def __call__(self, *args):
    return self.jitted()(*args)

  def lower(self, *args):
    return self.jitted().lower(*args)


class _Cached(_Lazy):
  def __init__(self, folder, name, make_jitted, context):
    super().__init__(make_jitted)
    self._folder, self._name, self._context = folder, name, context
    self._programs, self._last = {}, None

  def __call__(self, *args):
    if self._last is not None:
      try:
        return self._last(*args)
      except (TypeError, ValueError):  # raised before running: arguments of another signature
        pass
    if jax.config.jax_disable_jit:
      return self.jitted()(*args)
    signature = _signature(args)
    if signature not in self._programs:
      self._programs[signature] = self._load_or_compile(args, signature)
    if self._programs[signature] is not None:
      try:
        result = self._programs[signature](*args)
        self._last = self._programs[signature]
        return result
      except (TypeError, ValueError):  # what jax.jit takes and an executable does not (it reshards)
        self._programs[signature] = None
    self._last = None
    return self.jitted()(*args)

  def _load_or_compile(self, args, signature):
    key = hashlib.sha256(json.dumps([self._name, self._context, signature, _environment()]).encode()).hexdigest()
    path = os.path.join(self._folder, f"{self._name}-{key}.pkl")
    compiled = _load(path)
    if compiled is not None:
      jax.monitoring.record_event(LOADED)
      return compiled
    hits = []
    listen = lambda event, **_: hits.append(1) if event == "/jax/compilation_cache/cache_hits" else None
    jax.monitoring.register_event_listener(listen)
    try:
      compiled = self.lower(*args).compile()
    finally:
      jax.monitoring.unregister_event_listener(listen)
    files = _stats(_loaded())
    # Not what XLA loaded from its cache (its CPU backend saves that without some kernels, jaxlib 0.10),
    # nor what was traced from a module whose file changed after this process started (and may have
    # imported it): the file would no longer say what was traced.
    if not hits and all(stat is not None and stat[1] <= _STARTED for stat in files.values()):
      _store(path, compiled, files)
    return compiled


def _signature(args):
  """The arguments' tree, shapes, dtypes and shardings, as text."""
  leaves, tree = jax.tree.flatten(args)

  def leaf(x):
    sharding = getattr(x, "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    return [str(jax.typeof(x)), repr(sharding), [d.id for d in mesh.devices.flat] if mesh is not None else None]

  return json.dumps([str(tree), [leaf(x) for x in leaves]])


def _environment():
  return [sys.version, sys.prefix, jax.__version__, jax.devices()[0].client.platform_version,
          [(d.id, d.platform, d.device_kind, d.process_index) for d in jax.devices()],
          json.dumps(jax.config.values, sort_keys=True, default=repr),
          sorted((k, v) for k, v in os.environ.items()
                 if k.startswith(("JAX_", "XLA_", "SEGJAX_", "FLAX_", "LIBTPU_", "TPU_")))]


def _loaded():
  """The files of every loaded module but TensorFlow's AutoGraph's, which tf.data writes afresh in
  every process (under random names) from functions whose own files are here."""
  return {path for name, module in list(sys.modules.items())
          if isinstance(path := getattr(module, "__file__", None), str)
          and not name.startswith("__autograph_generated_file")}


def _own(paths):
  """Those not installed with Python or in its site-packages: segjax's and the user's modules."""
  installed = tuple({os.path.join(sysconfig.get_paths()[k], "") for k in ("stdlib", "platstdlib", "purelib", "platlib")})
  return {p for p in paths if not p.startswith(installed)}


def _stats(paths):
  """(size, mtime_ns) of each path; None where it is gone."""
  found = {}
  for path in paths:
    try:
      stat = os.stat(path)
      found[path] = (stat.st_size, stat.st_mtime_ns)
    except OSError:
      found[path] = None
  return found


def _load(path):
  folder = os.stat(os.path.dirname(path)) if os.path.isdir(os.path.dirname(path)) else None
  if folder is None or folder.st_uid != os.getuid() or folder.st_mode & 0o022:
    return None  # unpickling runs code: only from a folder no one else can write to
  try:
    with open(path, "rb") as f:
      entry = pickle.load(f)
  except FileNotFoundError:
    return None
  except Exception as e:  # pylint: disable=broad-except  (a torn or foreign file: compile again)
    logging.warning("Ignoring the stored program %s, which cannot be read (%s).", path, e)
    return None
  then = entry["files"]
  if not _own(_loaded()) <= then.keys() or _stats(then) != then:
    return None  # a file changed, or a module of segjax's or the user's is loaded now that was not then
  try:
    by_id = {d.id: d for d in jax.devices()}
    return serialize_executable.deserialize_and_load(entry["executable"], entry["in_tree"], entry["out_tree"],
                                                     execution_devices=[by_id[i] for i in entry["devices"]])
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Ignoring the stored program %s, which does not load (%s).", path, e)
    return None


def _store(path, compiled, files):
  """Writes aside, then renames: another process may be reading it."""
  try:
    executable, in_tree, out_tree = serialize_executable.serialize(compiled)
  except (ValueError, NotImplementedError) as e:
    logging.info("Not storing %s: %s", os.path.basename(path), e)
    return
  entry = {"files": files, "executable": executable, "in_tree": in_tree, "out_tree": out_tree,
           "devices": [d.id for d in compiled.runtime_executable().local_devices()]}
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), delete=False, suffix=".tmp") as f:
      pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(f.name, path)
  except OSError as e:
    logging.warning("Cannot store the program %s (%s); the next start compiles it again.", path, e)
