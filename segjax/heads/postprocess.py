"""Instance grouping and panoptic fusion in JAX with static shapes, so they run inside jit.

No Python loop over pixels or instances and no host round-trip: K instance slots per image, each
with a `valid` flag, as in Panoptic-DeepLab. Instances come out as one (H, W) map of slot + 1 (0 for
no instance), never as K full-size masks: at 1024x2048 those would be K x 2 MB to move and score.
"""
import jax
import jax.numpy as jnp

VOID = -1


def find_centers(center, threshold, nms_kernel, top_k, sort=False):
  """Peaks of one (H, W) heatmap: max-pool NMS, a score threshold, then the top K.

  With `sort`, the top K come from a full sort instead of lax.top_k: the same K (ties to the lower
  index), ~80x slower on a CPU, but free of the composite op jax lowers top_k to, which readers of
  older StableHLO (TensorFlow 2.21's SavedModel) cannot load.
  Returns yx (K, 2) int32, score (K,) and valid (K,) bool.
  """
  pooled = jax.lax.reduce_window(center, -jnp.inf, jax.lax.max, (nms_kernel, nms_kernel), (1, 1), "SAME")
  peaks = jnp.where((center == pooled) & (center > threshold), center, -jnp.inf).ravel()
  if sort:
    index = jnp.argsort(-peaks, stable=True)[:top_k]
    score = peaks[index]
  else:
    score, index = jax.lax.top_k(peaks, top_k)
  yx = jnp.stack(jnp.unravel_index(index, center.shape), axis=-1).astype(jnp.int32)
  return yx, score, jnp.isfinite(score)


def group_pixels(offsets, yx, valid):
  """Index (H, W) of the nearest valid centre to each pixel once moved by its predicted offset."""
  h, w = offsets.shape[:2]
  grid = jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij"), axis=-1)
  target = (grid + offsets).reshape(-1, 2)
  centers = yx.astype(jnp.float32)
  # |t - c|^2 = |t|^2 - 2 t.c + |c|^2, as one (H*W, K) matmul rather than an (H*W, K, 2) tensor.
  # Full float32: at default precision (bfloat16 passes on TPU) a 2048-pixel coordinate loses its
  # last bits and pixels between two centres change owner.
  cross = jnp.matmul(target, centers.T, precision=jax.lax.Precision.HIGHEST)
  d2 = (target**2).sum(-1, keepdims=True) - 2 * cross + (centers**2).sum(-1)[None]
  d2 = jnp.where(valid[None], d2, jnp.inf)
  return jnp.argmin(d2, axis=-1).reshape(h, w)


def instances(semantic_logits, center, offsets, *, thing_classes, threshold=0.1, nms_kernel=7, top_k=16,
              sort=False):
  """One image's K instances from the dense outputs.

  semantic_logits (H, W, C), center (H, W), offsets (H, W, 2). Every pixel predicted as a thing
  class joins its nearest centre; each instance takes the majority thing class of its pixels and
  the score centre * mean class probability; `sort` as in find_centers. Returns instance_map (H, W) int32 (slot + 1, 0 where
  no instance), valid (K,), classes (K,) int32, scores (K,).
  """
  num_classes = semantic_logits.shape[-1]
  probs = jax.nn.softmax(semantic_logits.astype(jnp.float32), axis=-1)
  semantic = jnp.argmax(probs, axis=-1)
  thing = jnp.zeros(num_classes, bool).at[jnp.asarray(thing_classes)].set(True)
  is_thing = thing[semantic]
  yx, peak, valid = find_centers(center.astype(jnp.float32), threshold, nms_kernel, top_k, sort)
  owner = group_pixels(offsets.astype(jnp.float32), yx, valid)
  # Per-slot sums by bincount over (slot, class): no (K, H, W) masks, no (H, W, C) one-hot.
  slot = jnp.where(is_thing, owner, top_k).ravel()  # pixels of no thing class go to a spare slot
  votes = jnp.bincount(slot * num_classes + semantic.ravel(), length=(top_k + 1) * num_classes)
  votes = votes.reshape(top_k + 1, num_classes)[:top_k] * thing
  classes = jnp.argmax(votes, axis=-1).astype(jnp.int32)
  area = jnp.bincount(slot, length=top_k + 1)[:top_k]
  confidence = jnp.bincount(slot, weights=probs.max(-1).ravel(), length=top_k + 1)[:top_k] / jnp.maximum(area, 1)
  valid = valid & (area > 0)
  instance_map = jnp.where(is_thing & valid[owner], owner + 1, 0).astype(jnp.int32)
  return {"instance_map": instance_map, "valid": valid, "classes": classes,
          "scores": jnp.where(valid, jnp.maximum(peak, 0) * confidence, 0.0)}


def panoptic_fusion(semantic, inst, *, thing_classes, min_stuff_area=64, label_divisor=1000):
  """One image's panoptic map (H, W) int32: class * label_divisor + instance slot + 1 for things,
  class * label_divisor for stuff, VOID for thing pixels no instance claims and small stuff."""
  slot = inst["instance_map"] - 1
  covered = (slot >= 0) & inst["valid"][jnp.maximum(slot, 0)]
  thing_id = inst["classes"][jnp.maximum(slot, 0)] * label_divisor + slot + 1
  is_thing = jnp.isin(semantic, jnp.asarray(thing_classes))
  stuff = ~is_thing & ~covered
  stuff_area = jnp.bincount(jnp.where(stuff, semantic, 0).ravel(), weights=stuff.ravel().astype(jnp.int32),
                            length=label_divisor)
  big_enough = stuff_area[semantic] >= min_stuff_area
  return jnp.where(covered, thing_id,
                   jnp.where(stuff & big_enough, semantic * label_divisor, VOID)).astype(jnp.int32)
