"""SIGTERM and SIGINT stop a run after the step in flight, at the same step on every process.

Preemptible TPU VMs and cluster schedulers (SLURM's `scancel`, `--signal`, a job's time limit) send
SIGTERM and give a short grace period; Ctrl-C sends SIGINT. One process alone notes the signal. With
several processes, JAX's preemption sync point decides the step: its coordination service hears a
SIGTERM on any process and every process reaches the same step. SIGINT is turned into a SIGTERM of
this process so that the same service hears it. With one process, a second signal acts at once, as
if none had been caught: no save.
"""
import os
import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils

# sysexits.h's EX_TEMPFAIL: "a temporary failure; the user is invited to retry". A scheduler or a
# wrapper script can requeue on it; the rerun resumes from the checkpoint saved at the stopping step.
EXIT_RESUMABLE = 75


class Stopped(Exception):
  """The run stopped on a signal after saving a checkpoint at `step`: rerun to continue."""

  def __init__(self, step, directory):
    super().__init__(f"stopped, resumable: checkpoint at step {step} saved in {directory}; run the "
                     "same command to continue.")
    self.step = step


class Watcher:
  """`with Watcher() as watcher:` ... `watcher.stop(step)` is True at the step to stop after."""

  def __init__(self):
    self._signal = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self  # signals reach the main thread only; a run in a thread stops as before
    if jax.process_count() > 1:  # SIGTERM stays JAX's (its handler is installed at start-up)
      self._previous[signal.SIGINT] = signal.signal(
          signal.SIGINT, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    else:
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._note)
    return self

  def _note(self, signum, _):
    """The first signal asks for a stop at the next step; a second one acts as if none were caught."""
    self._signal = signum
    self._restore()

  def _restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def stop(self, step):
    """Whether to stop after `step`; with several processes, call it at every step on every one."""
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._signal is not None

  def exit(self, step, directory):
    """Raises Stopped once every process has saved step `step` in `directory` and says so: a
    launcher that stops the others when one exits cannot cut a save short."""
    multihost_utils.sync_global_devices("segjax_stopped")
    logging.warning("Stopped by a signal after step %d, checkpoint saved in %s: run the same command "
                    "to continue (exit status %d).", step, directory, EXIT_RESUMABLE)
    raise Stopped(step, directory)

  def __exit__(self, *_):
    self._restore()
