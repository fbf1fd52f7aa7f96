"""Orbax CheckpointManager: the train state plus a little JSON metadata, saved asynchronously."""
import os

import jax
import orbax.checkpoint as ocp

from segjax.errors import UserError, cause

# 1: variables named by module (`stem/conv`, `stage1/block1/conv1/bn`), since segjax 0.2.
FORMAT = 1


class Checkpointer:
  """Saves and restores under `directory`, keeping the last `max_to_keep` steps."""

  def __init__(self, directory, max_to_keep):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step, state, meta):
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave({**meta, "format": FORMAT})))

  def restore(self, step, like):
    """Restores step `step` into arrays shaped, typed and sharded like the state `like`."""
    return self._restore(step, ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, like)))

  def restore_variables(self, step, like):
    """The `params` and `batch_stats` of step `step` alone, shaped, typed and sharded like `like`
    (a dict of those two, arrays or jax.ShapeDtypeStruct): no optimizer state is read."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    state, _ = self._restore(step, ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract), partial_restore=True))
    return state

  def _restore(self, step, state_args):
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(state=state_args,
                                                                      meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for a damaged or mismatched checkpoint
      if self._format(step) not in (None, FORMAT):
        raise UserError(f"Checkpoint step {step} in {self.directory} was written by an older segjax, "
                        "whose variables are named otherwise; it was left untouched: train again in "
                        "another --workdir.") from e
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
    self._manager.wait_until_finished()
    self._manager.close()
