"""Parameters and optimizer state sharded over the mesh's `fsdp` axis: the same step as replicated,
a quarter of the state per device under (data 2, fsdp 4), and a checkpoint saved under one mesh
that restores under another and continues bit for bit (8 emulated devices, conftest.py)."""
import jax
import ml_collections
import numpy as np
import pytest

from segjax.engine import checkpoint, parallel, train
from tiny_configs import tiny_config


@pytest.fixture(scope="module")
def config():
  c = tiny_config("/nonexistent")
  c.model.backbone = "vit_tiny_patch16"
  c.model.backbone_kwargs = ml_collections.ConfigDict(dict(patch=8, dim=16, depth=2, heads=2, mlp_hidden=32,
                                                           grid=(6, 6)))
  # SGD: its update is linear in the gradient, so the two steps differ by float32 rounding alone
  # (Adam's first step divides a gradient by its own size, which turns the rounding of a near-zero
  # gradient into a different update).
  c.optimizer.name, c.optimizer.weight_decay = "sgd", 0.05
  return c


def _batch(mesh, n=8):
  rng = np.random.default_rng(0)
  host = {"image": rng.random((n, 48, 48, 3), np.float32),
          "semantic": rng.integers(0, 4, (n, 48, 48)).astype(np.int32)}
  return parallel.to_global(host, mesh)


def _held(tree, device):
  """Bytes of `tree` on `device`, and in all."""
  held = sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards if s.device == device)
  return held, sum(x.nbytes for x in jax.tree.leaves(tree))


def test_a_sharded_step_is_the_replicated_step_with_a_quarter_of_the_state_per_device(config, tmp_path):
  replicated, sharded = parallel.make_mesh(fsdp=1), parallel.make_mesh(fsdp=4)
  assert dict(sharded.shape) == {"data": 2, "fsdp": 4}
  rep, fs = train.setup(config, replicated), train.setup(config, sharded)
  for part in (fs.state.params, fs.state.opt_state):
    held, total = _held(part, jax.devices()[0])
    assert held / total == pytest.approx(0.25, abs=0.01), held / total  # scalars and odd sizes whole
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(fs.state), jax.device_get(rep.state))
  rep_state, rep_metrics = rep.train_fn(rep.state, _batch(replicated))
  fs_state, fs_metrics = fs.train_fn(fs.state, _batch(sharded))
  assert float(fs_metrics["loss"]) == pytest.approx(float(rep_metrics["loss"]), rel=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(fs_state.params), jax.device_get(rep_state.params))
  assert fs_state.params["backbone"]["block1"]["mlp"]["fc1"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")

  # Saved under (2, 4), restored under (8, 1): the same numbers, and the next step is the one a
  # state moved to (8, 1) in memory takes.
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(1, fs_state, {"config": "x"})
  ckpt.wait()
  again = train.setup(config, replicated)
  restored, _ = ckpt.restore(1, again.state)
  ckpt.close()
  assert restored.params["backbone"]["pos_embed"].sharding.is_fully_replicated
  moved = jax.device_put(fs_state, jax.tree.map(lambda x: x.sharding, again.state))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(moved))
  (after_restore, m1), (after_move, m2) = again.train_fn(restored, _batch(replicated)), again.train_fn(
      moved, _batch(replicated))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(after_restore), jax.device_get(after_move))
  assert float(m1["loss"]) == float(m2["loss"])
