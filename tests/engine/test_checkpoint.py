"""Checkpointer: the last `keep` steps are kept, the latest restores exactly."""
import os

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from segjax.engine.checkpoint import Checkpointer, FORMAT
from segjax.errors import UserError


def test_keeps_the_last_checkpoints_and_restores_the_latest(tmp_path):
  ckpt = Checkpointer(str(tmp_path), keep=2)
  for step in range(1, 6):
    ckpt.save(step, {"w": jnp.full((3,), float(step)), "step": jnp.asarray(step)}, {"step": step})
  ckpt.close()
  assert sorted(os.listdir(tmp_path), key=int) == ["4", "5"]
  again = Checkpointer(str(tmp_path), keep=2)
  assert again.latest_step() == 5
  state, meta = again.restore(5, {"w": jnp.zeros((3,)), "step": jnp.asarray(0)})
  again.close()
  np.testing.assert_array_equal(state["w"], [5.0, 5.0, 5.0])
  assert int(state["step"]) == 5 and meta == {"step": 5, "format": FORMAT}


def test_a_checkpoint_of_an_older_segjax_is_named_as_such_and_kept(tmp_path):
  old = Checkpointer(str(tmp_path), keep=2)  # as segjax 0.1 saved: no format, Flax's auto names
  old._manager.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave({"Conv_0": jnp.ones(3)}),
                                               meta=ocp.args.JsonSave({"step": 3})))
  old.close()
  again = Checkpointer(str(tmp_path), keep=2)
  with pytest.raises(UserError, match=r"^Checkpoint step 3 in .* was written by an older segjax \(checkpoint "
                     rf"format 0, this one reads {FORMAT}\); it was left untouched: train again in another "
                     r"--workdir.$"):
    again.restore(3, {"conv": jnp.zeros(3)})
  again.close()
  assert os.listdir(tmp_path) == ["3"]


def test_a_failed_write_is_said_once_and_closing_does_not_replace_the_sentence(tmp_path):
  ckpt = Checkpointer(str(tmp_path), keep=2)
  ckpt.save(3, {"w": jnp.zeros(3)}, {"step": 3})
  wait = ckpt._manager.wait_until_finished

  def full_disk():  # what Orbax raises for a failed asynchronous write, at every wait after it
    wait()
    raise ValueError("RESOURCE_EXHAUSTED: Error writing ...: No space left on device [os_error_code='28']")

  ckpt._manager.wait_until_finished = full_disk
  with pytest.raises(UserError, match=r"^Cannot write checkpoint step 3 in .* \(No space left on device\); free "
                     r"space there and rerun, which resumes from the start: no checkpoint was complete\.$"):
    ckpt.close()
  ckpt._manager.wait_until_finished = wait
  ckpt._manager.close()


def test_closing_waits_for_the_removal_of_an_interrupted_save(tmp_path):
  os.makedirs(tmp_path / "8.orbax-checkpoint-tmp-1234" / "state")
  Checkpointer(str(tmp_path), keep=2).close()
  assert os.listdir(tmp_path) == []  # gone before the next Checkpointer opens the directory
