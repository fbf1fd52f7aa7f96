"""Real `python -m segjax.main` runs in subprocesses, for the tests that stop, kill and rerun them:
a tiny panoptic config long enough to be stopped mid-training, and what to compare between runs."""
import json
import os
import re
import subprocess
import sys
import time

import jax
import numpy as np

from segjax.engine import optimizer, train
from segjax.engine.checkpoint import Checkpointer
from segjax.engine.preemption import EXIT_RESUMABLE
from segjax.heads import build_segmenter
from tiny_configs import tiny_panoptic_config

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
TOTAL = 24
SETTINGS = dict(total_steps=TOTAL, eval_every=8, checkpoint_every=4)
TIMING = ("steps_per_sec", "seconds_per_image", "timing")
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS, os.environ.get("PYTHONPATH", "")]))
LAUNCH_TWO = [sys.executable, os.path.join(ROOT, "launch", "local.py"), "--processes=2",
              "--devices_per_process=4", "--timeout=400", "--"]


def write_config(path, data_dir):
  """A config file of the tiny panoptic model, trained for TOTAL steps (SETTINGS)."""
  path.write_text("from tiny_configs import tiny_panoptic_config\n\n\n"
                  f"def get_config():\n  return tiny_panoptic_config({data_dir!r}, **{SETTINGS!r})\n")
  return str(path)


def command(config_file, workdir):
  return [sys.executable, "-m", "segjax.main", f"--config={config_file}", f"--workdir={workdir}"]


def start(args, log):
  return subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)


def run(args, log_path):
  """Runs to the end; the test fails unless it exits 0."""
  with open(log_path, "a") as log:
    code = start(args, log).wait(timeout=600)
  assert code == 0, open(log_path).read()[-4000:]


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def wait_for_step(workdir, step, proc, timeout=300):
  """Returns the last train step logged once it is >= `step` (the config logs every step)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    assert proc.poll() is None, f"the run ended (status {proc.returncode}) before step {step}"
    try:
      logged = [r["step"] for r in records(workdir) if r["kind"] == "train"]
    except (OSError, ValueError):  # not there yet, or a line half written
      logged = []
    if logged and logged[-1] >= step:
      return logged[-1]
    time.sleep(0.02)
  raise AssertionError(f"no step {step} within {timeout} s")


def assert_stopped(proc, log_path, workdir):
  """The run exits with the resumable status soon after a signal, and names its checkpoint."""
  signalled = time.monotonic()
  code = proc.wait(timeout=120)
  seconds = time.monotonic() - signalled
  log = open(log_path).read()
  assert code == EXIT_RESUMABLE, log[-4000:]
  stops = {int(s) for s in re.findall(r"Stopped by a signal after step (\d+)", log)}
  assert len(stops) == 1, log[-4000:]
  step = stops.pop()
  assert max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == step
  print(f"stopped after step {step}, {seconds:.1f} s after the signal")
  assert seconds < 60
  return step


def variables(workdir, data_dir):
  """(step, variables) of the latest checkpoint in `workdir`."""
  config = tiny_panoptic_config(data_dir, **SETTINGS)
  model = build_segmenter(config.model, config.dataset.num_classes)
  tx, _ = optimizer.make_optimizer(config)
  like = train.create_train_state(model, tx, jax.random.key(0), config.input.crop_size)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  step = ckpt.latest_step()
  state, _ = ckpt.restore(step, like)
  ckpt.close()
  return step, jax.device_get({"params": state.params, "batch_stats": state.batch_stats})


def figures(workdir):
  """Every record but its timings, keyed by (kind, step): a step logged twice fails here."""
  seen = {}
  for r in records(workdir):
    key = (r["kind"], r["step"])
    assert key not in seen, f"{key} is logged twice"
    seen[key] = {k: v for k, v in r.items() if k not in TIMING}
  return seen


def assert_equal_runs(workdir, reference, data_dir):
  """The same final parameters and BatchNorm statistics, bit for bit, and the same records."""
  step, ours = variables(workdir, data_dir)
  ref_step, theirs = variables(reference, data_dir)
  assert step == ref_step == TOTAL
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)
  logged, ref_logged = figures(workdir), figures(reference)
  assert sum(kind == "eval" for kind, _ in ref_logged) == TOTAL // SETTINGS["eval_every"]
  assert sorted(logged) == sorted(ref_logged)
  for key, record in ref_logged.items():  # every loss and eval figure, exactly
    assert logged[key] == record, key
