"""Faults injected into real `python -m segjax.main` runs: SIGKILL at random steps, SIGTERM, and a
checkpoint disk that fills up (SIGTERM to one of two processes: tests/test_multihost.py). Each ends in
a resume that equals an uninterrupted run, or in one sentence with the earlier checkpoints intact."""
import glob
import os
import random
import re
import shutil
import signal
import subprocess

import jax
import numpy as np
import pytest

from runs import (ENV, ROOT, TOTAL, assert_equal_runs, assert_stopped, command, run, start, variables,
                  wait_for_step, write_config)


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
  assert f"Resuming from the checkpoint at step {step}" in open(log_path).read()
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
