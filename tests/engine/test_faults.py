"""Faults injected into real `python -m segjax.main` runs: SIGKILL at random steps, SIGTERM, a
checkpoint disk that fills up (SIGTERM to one of two processes: tests/engine/test_multihost.py), and
readers (predict, --eval_only, export) of its workdir while it saves. Each ends in a resume or a run
that equals an uninterrupted run, or in one sentence with the earlier checkpoints intact."""
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import jax
import numpy as np
from PIL import Image
import pytest

from runs import (ENV, ROOT, SETTINGS, TOTAL, assert_equal_runs, assert_stopped, command, records, run, start,
                  variables, wait_for_step, write_config)
from tiny_configs import tiny_panoptic_config


@pytest.fixture(scope="module")
def config_file(data_dir, tmp_path_factory):
  return write_config(tmp_path_factory.mktemp("fault_config") / "config.py", data_dir)


@pytest.fixture(scope="module")
def straight(config_file, tmp_path_factory):
  """The uninterrupted run: the reference every faulted run must equal."""
  workdir = str(tmp_path_factory.mktemp("straight") / "run")
  run(command(config_file, workdir), workdir + ".log")
  return workdir


@pytest.mark.slow
def test_runs_killed_at_random_steps_finish_equal_to_an_uninterrupted_run(config_file, straight, data_dir,
                                                                          tmp_path):
  workdir, log_path = str(tmp_path / "run"), str(tmp_path / "run.log")
  rng = random.Random(12)
  targets = sorted(rng.sample(range(2, TOTAL - 2), 5))
  killed = []
  with open(log_path, "a") as log:
    for target in targets:
      proc = start(command(config_file, workdir), log)
      killed.append(wait_for_step(workdir, target, proc))
      proc.send_signal(signal.SIGKILL)
      proc.wait()
  print("SIGKILL after the train lines of steps", killed)
  assert len(killed) == 5 and proc.returncode == -signal.SIGKILL
  run(command(config_file, workdir), log_path)
  assert_equal_runs(workdir, straight, data_dir)


@pytest.mark.slow
def test_sigterm_saves_the_step_in_flight_and_the_rerun_finishes_equal(config_file, straight, data_dir,
                                                                        tmp_path):
  workdir, log_path = str(tmp_path / "run"), str(tmp_path / "run.log")
  with open(log_path, "a") as log:
    proc = start(command(config_file, workdir), log)
    seen = wait_for_step(workdir, 5, proc)
    proc.send_signal(signal.SIGTERM)
    step = assert_stopped(proc, log_path, workdir)
  assert step >= seen
  run(command(config_file, workdir), log_path)
  rerun = open(log_path).read().split(f"Resuming from the checkpoint at step {step}")
  assert len(rerun) == 2, rerun[0][-3000:]
  rerun = rerun[1]
  # The rerun's initialisation and train step are the programs stored in the session's compilation
  # cache (tests/conftest.py), or its steps come from XLA's entries there (small programs are not kept).
  found = re.search(r"First train step done [\d.]+ s after setup began \((\d+) programs loaded without tracing, "
                    r"(\d+) of \d+ compilations from the persistent cache", rerun)
  assert found and (found[1] == "2" or int(found[2]) >= 1), rerun[-3000:]
  assert_equal_runs(workdir, straight, data_dir)


def _can_mount_tmpfs():
  try:
    return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                          capture_output=True, timeout=30, check=False).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="no unprivileged tmpfs mount here (unshare -rm "
                    "needs user namespaces), so no filesystem to fill up")
def test_a_full_checkpoint_disk_stops_the_run_with_a_sentence_and_keeps_the_earlier_ones(
    config_file, straight, data_dir, tmp_path):
  # Room for a few checkpoints of this model (tmpfs gives each file whole 4 KiB pages), not all.
  files = [p for p in glob.glob(os.path.join(straight, "checkpoints", str(TOTAL), "**"), recursive=True)
           if os.path.isfile(p)]
  pages = sum(-(-os.path.getsize(p) // 4096) + 1 for p in files)
  workdir = tmp_path / "run"
  checkpoints, kept = workdir / "checkpoints", tmp_path / "kept"
  checkpoints.mkdir(parents=True)
  script = (f"mount -t tmpfs -o size={pages * 4 * 5 // 2}k tmpfs {checkpoints} && "
            f"{' '.join(command(config_file, workdir))}; code=$?; cp -a {checkpoints} {kept}; exit $code")
  result = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 1, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  said = re.fullmatch(r"segjax: error: Cannot write checkpoint step (\d+) in \S+ \(No space left on device\); "
                      r"free space there and rerun, which resumes from the intact "
                      r"step (\d+)\.", last)
  assert said, result.stderr[-6000:]  # the sentence last: no library's echo of the failure after it
  assert "Traceback" not in result.stderr, result.stderr[-3000:]  # the sentence, not a writer thread's noise
  failed, intact = int(said.group(1)), int(said.group(2))
  print(f"the save of step {failed} did not fit; steps up to {intact} are intact")
  steps = sorted(int(s) for s in os.listdir(kept) if s.isdigit())
  assert failed > intact >= 4 and steps == list(range(4, failed, 4))[-3:] and steps[-1] == intact
  for step in steps:  # each restores, alone in a directory
    one = tmp_path / f"only{step}"
    shutil.copytree(kept / str(step), one / "checkpoints" / str(step))
    restored, saved = variables(str(one), data_dir)
    assert restored == step and all(np.isfinite(x).all() for x in jax.tree.leaves(saved))


def _checkpoints(workdir):
  """(newest step whose save is complete, or None; whether a save is in flight)."""
  try:
    names = os.listdir(os.path.join(workdir, "checkpoints"))
  except FileNotFoundError:
    return None, False
  return (max((int(s) for s in names if s.isdigit()), default=None),
          any("orbax-checkpoint-tmp" in s for s in names))


def _stopped(proc):
  with open(f"/proc/{proc.pid}/stat") as f:
    return f.read().rsplit(")", 1)[1].split()[0] == "T"


def _stop_in_a_save(proc, workdir, after, patience=2.0):
  """Stops the run (SIGSTOP) in a save that follows step `after`'s and says True, so that a read
  overlaps a save whatever this machine's speed; False if it saw none within `patience` seconds."""
  end = time.monotonic() + patience
  while proc.poll() is None and time.monotonic() < end:
    newest, saving = _checkpoints(workdir)
    if saving and newest > after:
      proc.send_signal(signal.SIGSTOP)
      while not _stopped(proc):
        time.sleep(0.001)
      if _checkpoints(workdir) == (newest, True):
        return True
      proc.send_signal(signal.SIGCONT)  # it finished that save before it stopped
    time.sleep(0.002)
  return False


@pytest.mark.slow
def test_predict_eval_only_and_export_read_a_run_while_it_saves_and_it_finishes_undisturbed(
    config_file, straight, data_dir, tmp_path):
  """Readers open its checkpoints read-only: a reader that removed the 'leftovers' of earlier runs
  would delete the save in flight, and the run would stop on it."""
  from segjax import export, predict
  from segjax.engine import train  # pylint: disable=g-import-not-at-top
  workdir, log_path = str(tmp_path / "run"), str(tmp_path / "run.log")
  image = str(tmp_path / "scene.png")
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), np.uint8)).save(image)
  config = tiny_panoptic_config(data_dir, **SETTINGS)

  def read(kind, n, run=workdir):
    if kind == "predict":
      return predict.predict_files(run, [image], str(tmp_path / f"predict{n}")).step
    if kind == "eval_only":
      return train.evaluate_checkpoint(config, run)[0]
    export.export(run, str(tmp_path / f"export{n}"))
    return json.load(open(tmp_path / f"export{n}" / "signature.json"))["step"]

  # The undisturbed run: the reference run continued to twice its steps (constant learning rate).
  reference = str(shutil.copytree(straight, tmp_path / "reference"))
  train.train_and_evaluate(tiny_panoptic_config(data_dir, **{**SETTINGS, "total_steps": 2 * TOTAL}), reference)
  for kind in ("predict", "eval_only", "export"):  # compiled beforehand, so that reads are quick
    read(kind, "_warm", reference)
  reads = []  # (reader, newest complete step before, the step it read, newest after, a save overlapped)
  stopped_in = []  # the newest complete step of each save a read stopped the run in
  with open(log_path, "a") as log:
    # A save and an eval at every step: many saves while readers read. Neither changes what it
    # trains (the batches are a function of the step).
    proc = start(command(config_file, workdir) + [
        f"--config.total_steps={2 * TOTAL}", "--config.checkpoint_every=1", "--config.eval_every=1"], log)
    try:
      while proc.poll() is None:
        before, saving = _checkpoints(workdir)
        if before is None:
          time.sleep(0.05)
          continue
        stopped = len(stopped_in) < 12 and _stop_in_a_save(proc, workdir, max(stopped_in, default=-1))
        if stopped:
          before, saving = _checkpoints(workdir)
        kind = ("predict", "eval_only", "export")[len(reads) % 3]
        step = read(kind, len(reads))
        after, still_saving = _checkpoints(workdir)
        if stopped:
          assert still_saving, "a reader removed the save in flight"
          stopped_in.append(before)
          proc.send_signal(signal.SIGCONT)
        reads.append((kind, before, step, after, saving or still_saving or after > before))
    finally:
      if proc.poll() is None:  # a reader failed
        proc.send_signal(signal.SIGCONT)
        proc.kill()
    code = proc.wait()
  print("reads (reader, newest complete before, read, newest after, a save overlapped):", *reads, sep="\n  ")
  assert code == 0, open(log_path).read()[-3000:]
  for kind, before, step, after, _ in reads:  # the newest complete step when it looked
    assert before <= step <= after, (kind, before, step, after)
  print("reads stopped the run in the saves after steps", stopped_in)
  assert len(stopped_in) >= 10, "too few reads caught the run in a save"
  step, ours = variables(workdir, data_dir)
  ref_step, theirs = variables(reference, data_dir)
  assert step == ref_step == 2 * TOTAL
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)
  losses = lambda run: [(r["step"], r["loss"]) for r in records(run) if r["kind"] == "train"]
  assert losses(workdir) == losses(reference)
