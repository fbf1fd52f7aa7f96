"""Stored programs (segjax/engine/programs.py) are found again without tracing, and never when any
file they were traced from changed, a module is loaded that was not then, or what they were stored
under differs."""
import importlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.engine import compilation, programs


@pytest.fixture
def store(tmp_path, monkeypatch):
  """Programs kept in tmp_path, as a script's (pytest-xdist's workers run code with no file)."""
  monkeypatch.setattr(sys.modules["__main__"], "__file__", __file__, raising=False)
  monkeypatch.syspath_prepend(str(tmp_path))
  programs.use(str(tmp_path / "cache"))
  yield tmp_path
  programs.use(None)
  for name in [n for n, m in sys.modules.items() if str(getattr(m, "__file__", "")).startswith(str(tmp_path))]:
    del sys.modules[name]  # a later test's process would not have loaded them


def _module(folder, name, scale, second=1):
  """A module file written with its modification time at `second` (edits within a second differ)."""
  (folder / f"{name}.py").write_text(f"SCALE = {scale}\n")
  os.utime(folder / f"{name}.py", ns=(second * 10**9, second * 10**9))
  sys.modules.pop(name, None)
  importlib.invalidate_caches()
  return importlib.import_module(name)


def _run(name, context, *args, module=None):
  """(result, traces, loaded): a fresh process's first call, as far as one process can tell."""
  traces, counter = [], compilation.Counter()
  scale = module.SCALE if module else 2.0

  def step(x):
    traces.append(1)
    return x * scale + 1

  try:
    result = programs.cached(name, lambda: jax.jit(step, donate_argnums=()), context)(*args)
  finally:
    counter.close()
  return np.asarray(result), len(traces), counter.loaded


def test_a_stored_program_is_loaded_without_tracing_and_computes_the_same(store):
  x = jnp.arange(6.0).reshape(2, 3)
  first = _run("double", "c", x)
  again = _run("double", "c", x)
  assert first[1:] == (1, 0) and again[1:] == (0, 1)  # traced and stored, then loaded untraced
  np.testing.assert_array_equal(again[0], np.arange(6.0).reshape(2, 3) * 2 + 1)
  assert _run("double", "other context", x)[1:] == (1, 0)
  assert _run("double", "c", jnp.ones((3, 2)))[1:] == (1, 0)  # another shape: another program
  assert _run("double", "c", x.astype(jnp.int32))[1:] == (1, 0)


def test_one_function_keeps_a_program_per_signature(store):
  calls = programs.cached("twice", lambda: jax.jit(lambda x: x * 2), "c")
  for shape in [(2,), (3,), (2,), (3,)]:
    np.testing.assert_array_equal(calls(jnp.ones(shape)), np.full(shape, 2.0))
  assert len(os.listdir(store / "cache" / "programs")) == 2


def test_an_edited_file_or_a_newly_loaded_module_is_never_run_stale(store):
  x = jnp.ones(3)
  module = _module(store, "scaled_step", 3.0)
  assert _run("scaled", "c", x, module=module)[1:] == (1, 0)
  assert _run("scaled", "c", x, module=module)[1:] == (0, 1)
  # The file edited (same size, a new time), the module reloaded: traced again, with the new value.
  module = _module(store, "scaled_step", 5.0, second=2)
  result, traces, loaded = _run("scaled", "c", x, module=module)
  assert (traces, loaded) == (1, 0) and result.tolist() == [6.0] * 3
  # A module loaded now that was not when the program was stored may register or patch anything.
  _module(store, "newcomer", 0)
  assert _run("scaled", "c", x, module=module)[1:] == (1, 0)
  assert _run("scaled", "c", x, module=module)[1:] == (0, 1)


def test_what_was_traced_from_a_file_edited_since_the_process_started_is_not_stored(store):
  x = jnp.ones(3)
  module = _module(store, "edited_step", 3.0)
  (store / "edited_step.py").write_text("SCALE = 4.0\n")  # edited while this process runs, not reloaded
  assert _run("edited", "c", x, module=module)[1:] == (1, 0)  # traced from the code in memory (3.0)
  assert _run("edited", "c", x, module=module)[1:] == (1, 0)  # which the file no longer says: not stored


def test_a_folder_others_can_write_to_is_not_loaded_from(store):
  x = jnp.ones(3)
  _run("shared", "c", x)
  os.chmod(store / "cache" / "programs", 0o777)  # anyone could have put code there
  assert _run("shared", "c", x)[1:] == (1, 0)
  os.chmod(store / "cache" / "programs", 0o755)
  assert _run("shared", "c", x)[1:] == (0, 1)


def test_a_torn_file_is_compiled_again_and_off_stores_nothing(store, monkeypatch):
  x = jnp.ones(3)
  _run("torn", "c", x)
  (path,) = (store / "cache" / "programs").iterdir()
  path.write_bytes(path.read_bytes()[:100])
  assert _run("torn", "c", x)[1:] == (1, 0)
  assert _run("torn", "c", x)[1:] == (0, 1)
  monkeypatch.delattr(sys.modules["__main__"], "__file__")  # python -c, a notebook: no file to compare
  assert _run("nofile", "c", x)[1:] == (1, 0)
  assert _run("nofile", "c", x)[1:] == (1, 0)
  monkeypatch.setattr(sys.modules["__main__"], "__file__", __file__, raising=False)
  programs.use(None)
  assert _run("off", "c", x)[1:] == (1, 0)
  assert _run("off", "c", x)[1:] == (1, 0)
  assert [p.name.split("-")[0] for p in (store / "cache" / "programs").iterdir()] == ["torn"]


_PROCESS = """
import sys
import jax, jax.numpy as jnp
from segjax.engine import compilation, programs
compilation.enable(sys.argv[1])
counter = compilation.Counter()
step = programs.cached("sliced", lambda: jax.jit(lambda x: jnp.sin(x[1:5]) * 2 + x[:4].sum()), sys.argv[2])
print(step(jnp.arange(8.0)).tolist(), counter.loaded)
"""


def test_an_executable_from_xlas_cache_is_not_stored(tmp_path):
  # XLA's CPU backend saves an executable it loaded from its persistent cache without some kernels:
  # stored, the third process would load it and fail ("Function slice_reduce_fusion not found").
  script, cache = tmp_path / "process.py", str(tmp_path / "cache")
  script.write_text(_PROCESS)
  env = dict(os.environ, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", XLA_FLAGS="")
  outputs = []
  for context in ("compiled here", "same program, another context", "same program, another context",
                  "compiled here"):
    done = subprocess.run([sys.executable, str(script), cache, context], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs.append(done.stdout.split())
  assert [loaded for *_, loaded in outputs] == ["0", "0", "0", "1"]  # the first process's, loaded by the last
  assert len({" ".join(values) for *values, _ in outputs}) == 1
  assert len(os.listdir(os.path.join(cache, "programs"))) == 1
