"""Multi-host on one machine: 2 processes x 4 CPU devices through launch/local.py, as a user would.

The same global batches give the same losses, parameters and BatchNorm statistics on 2 processes x
4 devices, 1 x 8 and 1 x 1, and the same eval figures for the same predictions; a 2-process run's
eval gathers every host's images and its checkpoint restores in a 1-process run; a 2-process
--eval_only reads a workdir without writing there.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_panoptic_config
import multihost_worker
import oracle
import runs
from segjax import data, weights
from segjax.engine import parallel, train
from segjax.engine.checkpoint import Checkpointer
from segjax.engine.evaluator import evaluate
from segjax.engine.metrics_writer import MetricsWriter
from segjax.errors import UserError
from segjax.heads import build_segmenter

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # its helpers and worker
ROOT = os.path.dirname(TESTS)


def _launch(command, processes=2, devices=4):
  """Runs `command` under launch/local.py; returns its combined output, failing the test on error."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS, os.environ.get("PYTHONPATH", "")]))
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch", "local.py"), f"--processes={processes}",
       f"--devices_per_process={devices}", "--timeout=400", "--", sys.executable, *command],
      env=env, capture_output=True, text=True, timeout=450, check=False)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
  return result.stdout


@pytest.mark.slow
def test_two_processes_equal_one_process_of_eight_and_of_one_device(data_dir, tmp_path):
  """Both start the backbone from one weights file, which each process reads."""
  out, init_from = str(tmp_path / "two.npz"), str(tmp_path / "backbone.npz")
  config = multihost_worker.config(init_from)
  model = build_segmenter(config.model, config.dataset.num_classes)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(1), jnp.zeros((1, 48, 48, 3))))
  rng = np.random.default_rng(1)
  weights.save(init_from, {c: {"backbone": jax.tree.map(
      lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32), v["backbone"])}
                           for c, v in shapes.items()}, {"arch": "seed"})
  _launch([os.path.join(TESTS, "multihost_worker.py"), out, data_dir, init_from])
  two = np.load(out)
  assert int(two["num_processes"]) == 2 and int(two["num_devices"]) == 8
  for devices in (jax.devices(), jax.devices()[:1]):
    losses, variables = multihost_worker.run(config, parallel.make_mesh(devices))
    np.testing.assert_allclose(two["losses"], losses, rtol=1e-5)
    assert len(variables) == len([k for k in two.files if k.startswith("var")])
    for name, value in variables.items():
      np.testing.assert_allclose(two["var" + name], value, rtol=1e-4, atol=1e-5, err_msg=name)
  assert not np.allclose(losses, multihost_worker.run(multihost_worker.config(), parallel.make_mesh())[0])
  # Each process scored only its half of the eval split, then they gathered: the figures are the
  # ones a single process gets for the whole split.
  one = oracle.score(tiny_panoptic_config(data_dir), str(tmp_path / "one"))
  assert two["score_mask_ap"] > 0.3 and two["score_pq_things"] > 0.3
  for key, value in one.items():
    assert float(two["score_" + key]) == pytest.approx(value, abs=1e-9), key


@pytest.fixture(scope="module")
def two_process_config(data_dir, tmp_path_factory):
  return runs.write_config(tmp_path_factory.mktemp("two_process_config") / "config.py", data_dir)


@pytest.fixture(scope="module")
def two_process_run(two_process_config, tmp_path_factory):
  """segjax.main on 2 processes x 4 devices: runs.TOTAL steps of the tiny panoptic model, with evals
  and checkpoints."""
  workdir = str(tmp_path_factory.mktemp("two_process_run") / "workdir")
  log = _launch(["-m", "segjax.main", f"--config={two_process_config}", f"--workdir={workdir}"])
  return workdir, log


def _children(pid):
  with open(f"/proc/{pid}/task/{pid}/children") as f:
    return [int(p) for p in f.read().split()]


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_one_step_and_the_rerun_finishes_equal(
    two_process_config, two_process_run, data_dir, tmp_path):
  workdir, log_path = str(tmp_path / "run"), str(tmp_path / "run.log")
  with open(log_path, "a") as log:
    proc = runs.start(runs.LAUNCH_TWO + runs.command(two_process_config, workdir), log)
    runs.wait_for_step(workdir, 5, proc)
    workers = _children(proc.pid)
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGTERM)  # process 1's: the coordination service tells process 0
    step = runs.assert_stopped(proc, log_path, workdir)
  log = open(log_path).read()
  for process in (0, 1):  # each process says where it stopped: at the same step
    lines = [l for l in log.splitlines() if l.startswith(f"[{process}]") and "Stopped by a signal" in l]
    assert len(lines) == 1 and f"after step {step}," in lines[0], log[-3000:]
  runs.run(runs.LAUNCH_TWO + runs.command(two_process_config, workdir), log_path)
  runs.assert_equal_runs(workdir, two_process_run[0], data_dir)


@pytest.mark.slow
def test_two_process_run_logs_once_and_scores_every_host(two_process_run):
  workdir, log = two_process_run
  assert "[0]" in log and f"Training steps 0..{runs.TOTAL} on 8 devices" in log
  assert "[1] " not in "".join(l for l in log.splitlines(True) if "Training steps" in l)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, runs.TOTAL + 1))  # one writer
  with open(os.path.join(workdir, "eval", str(runs.TOTAL), "instances_gt.json")) as f:
    assert len(json.load(f)["images"]) == 20  # both hosts' halves of the validation split


@pytest.mark.slow
def test_two_process_checkpoint_restores_and_scores_the_same_in_one_process(data_dir, two_process_run,
                                                                            tmp_path):
  workdir = str(tmp_path / "run")  # a copy: the fixture's run stays as it is for the other tests
  shutil.copytree(two_process_run[0], workdir)
  config = tiny_panoptic_config(data_dir, **runs.SETTINGS)
  mesh = parallel.make_mesh()
  _, _, eval_fn, like = train.setup(config, mesh)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 3)
  state, meta = ckpt.restore(runs.TOTAL, like)
  ckpt.close()
  assert int(state.step) == runs.TOTAL and meta["step"] == runs.TOTAL
  writer = MetricsWriter(str(tmp_path))
  scores = evaluate(eval_fn, state, data.EvalData(config, config.eval_batch_size), mesh, config,
                    oracle.CLASS_NAMES, runs.TOTAL, str(tmp_path), writer)
  writer.close()
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    two = [r for r in map(json.loads, f) if r["kind"] == "eval"][-1]
  for key in ("miou", "pixel_acc", "pq", "sq", "rq"):  # mask AP of this short run is 0: see the worker
    assert two[key] > 0.05 and scores[key] == pytest.approx(two[key], abs=1e-6), key

  # And training goes on from it in one process.
  train.train_and_evaluate(tiny_panoptic_config(data_dir, **{**runs.SETTINGS, "total_steps": runs.TOTAL + 1}),
                           workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    steps = [r["step"] for r in map(json.loads, f) if r["kind"] == "train"]
  assert steps == list(range(1, runs.TOTAL + 2))


def _files(directory):
  """{path: (size, modification time)} of every file and folder under `directory`."""
  found = {}
  for root, folders, files in os.walk(directory):
    for name in folders + files:
      path = os.path.join(root, name)
      found[os.path.relpath(path, directory)] = (os.path.getsize(path), os.stat(path).st_mtime_ns)
  return found


@pytest.mark.slow
def test_eval_only_on_two_processes_reads_one_step_and_leaves_a_save_in_flight_alone(
    two_process_config, two_process_run, tmp_path):
  workdir = str(tmp_path / "run")  # a copy: the fixture's run stays as it is for the other tests
  shutil.copytree(two_process_run[0], workdir)
  checkpoints = os.path.join(workdir, "checkpoints")
  # What the run that owns the workdir has on disk while it saves the next step.
  shutil.copytree(os.path.join(checkpoints, str(runs.TOTAL)),
                  os.path.join(checkpoints, f"{runs.TOTAL + 1}.orbax-checkpoint-tmp"))
  before = _files(checkpoints)
  log = _launch(["-m", "segjax.main", f"--config={two_process_config}", f"--workdir={workdir}", "--eval_only"])
  assert _files(checkpoints) == before  # no clean-up, deletion or metadata, on either process
  said = [line for line in log.splitlines() if f"Step {runs.TOTAL} of {workdir}: miou " in line]
  assert len(said) == 1 and said[0].startswith("[0]"), log[-3000:]  # the answer, from process 0
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  (only,) = [r for r in records if r["kind"] == "eval_only"]
  trained = [r for r in records if r["kind"] == "eval" and r["step"] == runs.TOTAL][0]
  assert only["step"] == runs.TOTAL
  for key in ("miou", "pixel_acc", "pq"):  # both processes restored the same step and scored it
    assert only[key] == pytest.approx(trained[key], abs=1e-9), key


@pytest.fixture
def no_launch_env(monkeypatch):
  """No SEGJAX_* variables: the test says what the launch asks for."""
  for name in (parallel.ENV_COORDINATOR, parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID,
               parallel.ENV_DISTRIBUTED):
    monkeypatch.delenv(name, raising=False)
  return monkeypatch


@pytest.mark.parametrize("kwargs,env,message", [
    ({"num_processes": 2}, {}, "2 processes need a coordinator: pass --coordinator_address"),
    ({"coordinator_address": "host:1234", "num_processes": 2}, {},
     "needs the number of processes and this process's id too"),
    ({"coordinator_address": "host:1234", "num_processes": 2, "process_id": 2}, {},
     "Process id 2 is outside 0..1"),
    ({}, {"SEGJAX_NUM_PROCESSES": "two"}, "SEGJAX_NUM_PROCESSES='two' is not an integer"),
])
def test_incomplete_distributed_settings_get_a_sentence(no_launch_env, kwargs, env, message):
  for name, value in env.items():
    no_launch_env.setenv(name, value)
  with pytest.raises(UserError, match=re.escape(message)):
    parallel.initialize(**kwargs)


def test_a_single_process_run_starts_no_distributed_runtime(no_launch_env):  # pylint: disable=unused-argument
  assert parallel.initialize() is False and jax.process_count() == 1
