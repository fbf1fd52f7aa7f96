"""Orbax CheckpointManager: the train state plus a little JSON metadata, saved asynchronously.

A save is first written to `<step>.orbax-checkpoint-tmp` and only becomes step `<step>` when it is
complete, by an atomic rename (Orbax's rule for a local or network disk; on a bucket it would write
`commit_success.txt` last instead). So an interrupted save is never the latest step; its leftover is
removed when the next run opens the directory.

Only the run that trains in a directory writes there. Predict, export and --eval_only open it
read-only (`read_only=True`): no cleanup, no deletion, no metadata, so they cannot break a save in
flight, and they read the newest step that is complete.
"""
import functools
import os
import re
import shutil

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from segjax.errors import UserError, cause

# 1: variables named by module (`stem/conv`, `stage1/block1/conv1/bn`), since segjax 0.2.
# 2: the optimizer state inside optax.apply_if_finite's (config.optimizer.skip_nonfinite); a format 1
#    checkpoint still gives its variables (predict, export, --eval_only), not its optimizer state.
FORMAT = 2
# Where an unreadable checkpoint goes when an older one reads: beside `checkpoints/`, never deleted.
DAMAGED = "damaged_checkpoints"


def _one_writer_per_array():
  """On the CPU all replicas of an array sit in this process's memory, so Orbax's replica-parallel
  save (each replica writes a slice) saves nothing and compiles a slice per array shape: 300 s for
  the first save of 600 arrays over 8 devices, against 2 s. Orbax already turns it off on GPUs."""
  global _REGISTERED
  if jax.default_backend() != "cpu" or _REGISTERED:
    return
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # Orbax warns that it replaces its default: by design here
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
  finally:
    logging.set_verbosity(verbosity)
  _REGISTERED = True


_REGISTERED = False
# A reader retries a step deleted under it this many times: each retry reads the then newest step.
# (A step is deleted only once newer ones are complete: one that failed to read while it is still
# the newest is damaged, or saved by another config.)
_READ_ATTEMPTS = 5


def _reason(e):
  """The operating system's words for a failed write (tensorstore buries them), else the cause."""
  code = re.search(r"os_error_code='(\d+)'", str(e))
  if code:
    return os.strerror(int(code.group(1)))
  return e.strerror if isinstance(e, OSError) and e.strerror else cause(e)


def _from_process_0(step):
  """Process 0's step (or None) on every process, so that all of them read the same one."""
  if jax.process_count() == 1:
    return step
  step = int(multihost_utils.broadcast_one_to_all(np.int32(-1 if step is None else step)))
  return None if step < 0 else step


def _on_every_process(read, step, directory):
  """What read() returns where it reads on every process; else its UserError, on every process."""
  try:
    value, error = read(), None
  except UserError as e:
    value, error = None, e
  if jax.process_count() > 1 and multihost_utils.process_allgather(np.int32(error is None)).min() == 0:
    error = error or UserError(f"Checkpoint step {step} in {directory} cannot be read on another process.")
  if error is not None:
    raise error
  return value


class Checkpointer:
  """Saves and restores under `directory`, keeping the latest `keep` steps; with `read_only`, only
  restores, for a reader beside the run that owns the directory."""

  def __init__(self, directory, keep=None, read_only=False):
    _one_writer_per_array()
    self.directory = os.path.abspath(directory)
    if read_only:  # the owner's leftovers are its save in flight: never clean them up
      options = ocp.CheckpointManagerOptions(read_only=True, create=False, cleanup_tmp_directories=False)
    else:
      options = ocp.CheckpointManagerOptions(
          preservation_policy=ocp.checkpoint_managers.LatestN(n=keep), create=True,
          cleanup_tmp_directories=True)
    for attempt in range(_READ_ATTEMPTS):  # a reader lists the steps as the run deletes one
      try:
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        break
      except FileNotFoundError:  # Orbax stats each listed step's folder (as in _reload)
        if attempt == _READ_ATTEMPTS - 1:
          raise
    self._saving = None  # the step whose asynchronous write may still fail
    self._reported = False  # a failed write was raised as a sentence: Orbax raises it again at every wait

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step, state, meta):
    """Starts writing step `step` once the previous write is on disk (Orbax waits for it anyway)."""
    self.wait()
    self._saving = step
    self._guarded(lambda: self._manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      meta=ocp.args.JsonSave({**meta, "format": FORMAT}))))

  def wait(self):
    """Blocks until the last save is on disk; a failed write is raised here."""
    self._guarded(self._manager.wait_until_finished)
    self._saving = None

  def _guarded(self, write):
    try:
      write()
    except (OSError, ValueError) as e:  # tensorstore reports a full disk as ValueError, Python as OSError
      failed, self._saving = self._saving, None
      if failed is None:
        if self._reported:  # the same failed write, already said: it must not replace the sentence
          return
        raise
      self._reported = True
      kept = [s for s in self._manager.all_steps() if s != failed]
      raise UserError(
          f"Cannot write checkpoint step {failed} in {self.directory} ({_reason(e)}); free space there "
          "and rerun, which resumes from "
          + (f"the intact step {max(kept)}." if kept else "the start: no checkpoint was complete.")) from e

  def restore(self, step, like):
    """Restores step `step` into arrays shaped, typed and sharded like the state `like`."""
    return self._restore(step, ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, like)))

  def restore_latest(self, like):
    """(step, state, meta) of the newest checkpoint that reads, or None when there is none.

    A newer one that does not read while an older one does is damaged: it is moved to
    `damaged_checkpoints/` beside the directory, so the run goes on from the older one and saves
    that step again later. When none reads, nothing is moved: the config may be what is wrong.
    Every process must restore the same step: a step that one of them cannot read counts as
    unreadable for all.
    """
    failures = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state, meta = _on_every_process(functools.partial(self.restore, step, like), step, self.directory)
      except UserError as error:
        failures.append((step, error))
        continue
      if failures:
        self._move_aside(failures, step)
      return step, state, meta
    if failures:
      raise failures[0][1]
    return None

  def _move_aside(self, failures, good):
    target = os.path.join(os.path.dirname(self.directory), DAMAGED)
    for step, error in failures:
      name, n = str(step), 1
      while os.path.exists(os.path.join(target, name)):  # damaged twice: keep both
        name, n = f"{step}.{n}", n + 1
      logging.warning("Checkpoint step %d cannot be read (%s), so it was moved to %s and the run resumes from "
                      "step %d, the newest that reads.", step, cause(error.__cause__ or error),
                      os.path.join(target, name), good)
      if jax.process_index() == 0:
        os.makedirs(target, exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), os.path.join(target, name))
    multihost_utils.sync_global_devices("segjax_damaged_checkpoints_moved")
    self._manager.reload()

  def restore_variables(self, step, like):
    """The `params` and `batch_stats` of step `step` alone, shaped, typed and sharded like `like`
    (a dict of those two, arrays or jax.ShapeDtypeStruct): no optimizer state is read."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    state, _ = self._restore(step, ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract), partial_restore=True))
    return state

  def restore_newest_variables(self, like):
    """(step, variables) of the newest complete checkpoint, as restore_variables reads them, or None
    when there is none. The run that owns the directory may be saving meanwhile and deleting its
    older steps: a step it deletes while it is read is not an error, the newest is read instead.
    Every process reads the same step."""
    for _ in range(_READ_ATTEMPTS):
      self._reload()
      step = _from_process_0(self._manager.latest_step())
      if step is None:
        return None
      try:
        read = functools.partial(self.restore_variables, step, like)
        return step, _on_every_process(read, step, self.directory)
      except UserError as e:
        error = e
        self._reload()
        if _from_process_0(self._manager.latest_step()) == step:  # still the newest: it does not read
          raise
    raise error  # newer steps kept coming, and the last read failed too: its reason, not a guess

  def _reload(self):
    """Lists the steps again; a step deleted while it is listed is left out, as it is gone."""
    for _ in range(_READ_ATTEMPTS):
      try:
        return self._manager.reload()
      except FileNotFoundError:  # Orbax stats each step's folder as the run deletes one
        continue
    self._manager.reload()

  def _restore(self, step, state_args):
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(state=state_args,
                                                                      meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for a damaged or mismatched checkpoint
      if self._format(step) not in (None, FORMAT):
        raise UserError(f"Checkpoint step {step} in {self.directory} was written by an older segjax "
                        f"(checkpoint format {self._format(step)}, this one reads {FORMAT}); it was left "
                        "untouched: train again in another --workdir.") from e
      raise UserError(
          f"Cannot read checkpoint step {step} in {self.directory} ({cause(e)}); it was left "
          "untouched: move it aside or use another --workdir, or restore the config it was saved "
          "with.") from e
    return restored.state, restored.meta

  def _format(self, step):
    """The checkpoint's FORMAT (0 before there was one), or None when its metadata cannot be read."""
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception:  # pylint: disable=broad-except  (the caller reports the first failure)
      return None
    return meta.get("format", 0)

  def close(self):
    """Waits for the last save and for the removal of leftovers Orbax started when it opened the
    directory (so a Checkpointer opened next cannot race it), and closes; a failed last write is
    still raised, once."""
    try:
      self.wait()
    finally:
      self._manager._maybe_await_cleanup_tmp_directory()  # pylint: disable=protected-access  (no public wait)
      self._guarded(self._manager.close)
