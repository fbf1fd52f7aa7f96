"""Centre/offset targets and their decoding by the JAX post-processing (metrics: tests/evaluation/test_metrics.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from segjax.data import scenes
from segjax.heads import panoptic_deeplab

THINGS = (1, 2, 3)


def _targets(scene):
  return {k: v.numpy() for k, v in panoptic_deeplab.center_offset_targets(
      scene["semantic"].astype(np.int32), scene["instance"].astype(np.int32), THINGS, 8.0, 255).items()}


def test_targets_by_hand():
  semantic = np.zeros((8, 8), np.int32)
  instance = np.zeros((8, 8), np.int32)
  # Instance ids as Cityscapes writes them (labelId * 1000 + k): far apart, above any slot count.
  semantic[2:5, 1:4], instance[2:5, 1:4] = 1, 26001  # a thing, centre of mass (3, 2)
  semantic[5:8, 5:8], instance[5:8, 5:8] = 2, 33000  # another, centre (6, 6)
  semantic[0, 4:8], instance[0, 4:8] = 3, 3  # stuff: its instance id is no instance
  semantic[0:2, 0:2] = 1  # thing pixels without an instance: a crowd region
  semantic[4, 1] = 255  # an ignored pixel inside the first thing
  t = {k: v.numpy() for k, v in panoptic_deeplab.center_offset_targets(
      tf.constant(semantic), tf.constant(instance), (1, 2), 1.5, 255).items()}
  yy, xx = np.mgrid[0:8, 0:8]
  gauss = lambda cy, cx: np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.5**2))
  np.testing.assert_allclose(t["center"], np.maximum(gauss(3, 2), gauss(6, 6)), atol=1e-6)
  first = (instance == 26001) & (semantic != 255)
  second = instance == 33000
  offsets = np.zeros((8, 8, 2))
  offsets[first] = np.stack([3 - yy[first], 2 - xx[first]], -1)  # (dy, dx) from the pixel to its centre
  offsets[second] = np.stack([6 - yy[second], 6 - xx[second]], -1)
  np.testing.assert_allclose(t["offsets"], offsets, atol=1e-6)
  np.testing.assert_array_equal(t["offset_weight"], first | second)
  crowd = np.zeros((8, 8), bool)
  crowd[0:2, 0:2] = True
  np.testing.assert_array_equal(t["center_weight"], (semantic != 255) & ~crowd)


@pytest.mark.parametrize("index", range(6))
def test_decoding_ground_truth_targets_recovers_the_instances(index):
  scene = scenes.draw_scene([0, 1, index])
  t = _targets(scene)
  assert t["center"].max() == 1.0 and t["center"].min() >= 0.0
  logits = jax.nn.one_hot(scene["semantic"], 4) * 10.0
  out = jax.jit(lambda l, c, o: panoptic_deeplab.instances(l, c, o, thing_classes=THINGS, threshold=0.5,
                                                      nms_kernel=7, top_k=16))(logits, t["center"], t["offsets"])
  masks = [np.asarray(out["instance_map"]) == k + 1 for k in range(16)]
  found = {tuple(np.flatnonzero(m)) for m, v in zip(masks, np.asarray(out["valid"])) if v}
  truth = {tuple(np.flatnonzero(scene["instance"] == k)) for k in range(1, len(scene["label"]) + 1)}
  assert found == truth
  for m, v, c in zip(masks, np.asarray(out["valid"]), np.asarray(out["classes"])):
    if v:
      assert np.all(scene["semantic"][m] == c)


def test_postprocess_is_jittable_with_static_shapes():
  fn = jax.jit(jax.vmap(lambda l, c, o: panoptic_deeplab.instances(l, c, o, thing_classes=THINGS, top_k=5)))
  key = jax.random.key(0)
  out = fn(jax.random.normal(key, (2, 32, 40, 4)), jax.random.uniform(key, (2, 32, 40)),
           jax.random.normal(key, (2, 32, 40, 2)))
  assert out["instance_map"].shape == (2, 32, 40) and out["instance_map"].dtype == jnp.int32
  assert out["valid"].shape == out["classes"].shape == out["scores"].shape == (2, 5)
  pan = jax.jit(jax.vmap(lambda s, i: panoptic_deeplab.panoptic_fusion(s, i, thing_classes=THINGS, min_stuff_area=4)))(
      jnp.zeros((2, 32, 40), jnp.int32), out)
  assert pan.shape == (2, 32, 40) and pan.dtype == jnp.int32
