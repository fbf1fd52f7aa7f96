"""Checkpointer: the last `max_to_keep` steps are kept, the latest restores exactly."""
import os

import jax.numpy as jnp
import numpy as np

from segjax.checkpoint import Checkpointer


def test_keeps_the_last_checkpoints_and_restores_the_latest(tmp_path):
  ckpt = Checkpointer(str(tmp_path), max_to_keep=2)
  for step in range(1, 6):
    ckpt.save(step, {"w": jnp.full((3,), float(step)), "step": jnp.asarray(step)}, {"step": step})
  ckpt.close()
  assert sorted(os.listdir(tmp_path), key=int) == ["4", "5"]
  again = Checkpointer(str(tmp_path), max_to_keep=2)
  assert again.latest_step() == 5
  state, meta = again.restore(5, {"w": jnp.zeros((3,)), "step": jnp.asarray(0)})
  again.close()
  np.testing.assert_array_equal(state["w"], [5.0, 5.0, 5.0])
  assert int(state["step"]) == 5 and meta == {"step": 5}
