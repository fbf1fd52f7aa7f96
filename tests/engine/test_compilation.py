"""The persistent compilation cache (segjax/engine/compilation.py) in real `python -m segjax.main`
runs: a second start of a run compiles nothing the first compiled and traces neither the model's
initialisation nor the train step (segjax/engine/programs.py), its log says so, and "off" writes
nothing."""
import os
import re

import pytest

from runs import ENV, command, run, write_config

_FIRST = re.compile(r"First train step done ([\d.]+) s after setup began \((.*)\)\.")
_SHORT = ["--config.total_steps=2", "--config.eval_every=2", "--config.checkpoint_every=2"]


def _first_step(log_path):
  found = _FIRST.findall(open(log_path).read())
  assert len(found) == 1, open(log_path).read()[-3000:]
  return float(found[0][0]), found[0][1]


@pytest.mark.slow
def test_a_second_start_loads_every_compilation_from_the_cache_and_off_writes_nothing(data_dir, tmp_path,
                                                                                     monkeypatch):
  config_file = write_config(tmp_path / "config.py", data_dir)
  cache, jax_dir = tmp_path / "cache", tmp_path / "jax_cache"
  env = {k: v for k, v in ENV.items() if not k.startswith(("JAX_PERSISTENT_CACHE", "SEGJAX_COMPILATION"))}
  env["JAX_COMPILATION_CACHE_DIR"] = str(jax_dir)  # what --compilation_cache overrides
  monkeypatch.setattr("runs.ENV", env)
  said = []
  for name in ("cold", "warm"):
    workdir = str(tmp_path / name)
    run(command(config_file, workdir) + _SHORT + [f"--compilation_cache={cache}"], workdir + ".log")
    said.append(_first_step(workdir + ".log")[1])
  cold, warm = (re.fullmatch(rf"(\d+) programs loaded without tracing, (\d+) of (\d+) compilations from the "
                             rf"persistent cache in {re.escape(str(cache))}", s) for s in said)
  print(said)
  assert cold and warm, said
  assert int(cold[1]) == int(cold[2]) == 0 < int(cold[3]), said  # nothing stored yet: every one written
  # The initialisation and the train step loaded untraced; what is left (the seed's key) from XLA's cache.
  assert int(warm[1]) == 2 and int(warm[2]) == int(warm[3]) == int(cold[3]) - 2, said
  assert os.listdir(cache) and not os.path.exists(jax_dir)
  workdir = str(tmp_path / "off")
  run(command(config_file, workdir) + _SHORT + ["--compilation_cache=off"], workdir + ".log")
  assert _first_step(workdir + ".log")[1] == "the persistent compilation cache is off"
  assert not os.path.exists(jax_dir)
