"""Panoptic-DeepLab (config.model.head="panoptic_deeplab"): a semantic decoder and a centre/offset
instance decoder (config.model.instance_decoder) on the same features; instances are pixels grouped
to their nearest predicted centre, fused with the semantic map into a panoptic map.

Grouping and fusion run in JAX with static shapes, so they run inside jit: no Python loop over
pixels or instances and no host round-trip, K instance slots per image, each with a `valid` flag.
Instances come out as one (H, W) map of slot + 1 (0 for no instance), never as K full-size masks:
at 1024x2048 those would be K x 2 MB to move and score.
"""
import functools

import jax
import jax.numpy as jnp

from segjax import checks
from segjax.errors import UserError
from segjax.heads.head import VOID
from segjax.heads.semantic import LOGITS, Semantic
from segjax.models.instance_decoders import INSTANCE_DECODERS
from segjax.models.segmenter import build


class PanopticDeepLab(Semantic):
  label_keys = ("semantic", "instance")
  metrics = ("semantic", "instances", "panoptic")
  outputs = {LOGITS: "probabilities", "center": "dense", "offsets": "displacement"}
  defaults = {
      "model": {**Semantic.defaults["model"], "instance_decoder": "center_offset", "instance_decoder_kwargs": {}},
      "loss": {**Semantic.defaults["loss"],
               "center_weight": 200.0,  # heatmap MSE (Panoptic-DeepLab's weights)
               "offset_weight": 0.01,  # offset L1, in pixels
               "center_sigma": 8.0},  # Gaussian of the centre targets, in pixels
      "postprocess": {"center_threshold": 0.1,
                      "nms_kernel": 7,
                      "top_k": 16,  # instance slots per image
                      "min_stuff_area": 64},
  }
  rules = {
      **Semantic.rules,
      "loss.center_weight": checks.WEIGHT,
      "loss.offset_weight": checks.WEIGHT,
      "loss.center_sigma": checks.number_in(lambda v: v > 0, "> 0, in pixels"),
      "postprocess.center_threshold": checks.UNIT,
      "postprocess.nms_kernel": (lambda v: checks.is_int(v) and v >= 1 and v % 2 == 1,
                                 "give an odd integer >= 1, e.g. 7"),
      "postprocess.top_k": checks.AT_LEAST_1,
      "postprocess.min_stuff_area": checks.ints_from(0),
  }

  def modules(self, model_config, num_classes, dtype):
    return super().modules(model_config, num_classes, dtype) + (
        ("instance_head", build(INSTANCE_DECODERS, model_config, "instance_decoder", dtype=dtype), None),)

  def check(self, config):
    divisor, top_k = config.dataset.label_divisor, config.postprocess.top_k
    if divisor is not None and top_k >= divisor:  # panoptic id = class * divisor + slot + 1
      raise UserError(f"config.postprocess.top_k is {top_k}, not below config.dataset.label_divisor={divisor}: "
                      "instance ids would run into the next class's panoptic ids; give at most "
                      f"{divisor - 1} instances.")

  def targets(self, semantic, instance, config):
    return center_offset_targets(semantic, instance, tuple(config.dataset.thing_classes),
                                 config.loss.center_sigma, config.dataset.ignore_label)

  def synthetic_targets(self, config, key, n, size):
    ones, (a, b) = jnp.ones((n, size, size)), jax.random.split(key)
    return {"center": jax.random.uniform(a, (n, size, size)), "center_weight": ones,
            "offsets": jax.random.normal(b, (n, size, size, 2)) * 8, "offset_weight": ones}

  def loss(self, outputs, batch, config, key=None):
    loss, parts = super().loss(outputs, batch, config, key)
    center, offset = center_offset_losses(outputs["center"], outputs["offsets"], batch)
    return (loss + config.loss.center_weight * center + config.loss.offset_weight * offset,
            {**parts, "center_mse": center, "offset_l1": offset})

  def postprocess(self, outputs, config, sort=False):
    semantic = super().postprocess(outputs, config)["semantic"]
    things, pp = tuple(config.dataset.thing_classes), config.postprocess
    found = jax.vmap(functools.partial(
        instances, thing_classes=things, threshold=pp.center_threshold,
        nms_kernel=pp.nms_kernel, top_k=pp.top_k, sort=sort))(outputs[LOGITS], outputs["center"],
                                                            outputs["offsets"])
    panoptic = jax.vmap(functools.partial(
        panoptic_fusion, thing_classes=things, min_stuff_area=pp.min_stuff_area,
        label_divisor=config.dataset.label_divisor))(semantic, found)
    return {"semantic": semantic, "instances": found, "panoptic": panoptic}

  def tiny(self, c):
    super().tiny(c)
    c.model.instance_decoder_kwargs.hidden = 8
    c.model.instance_decoder_kwargs.branch = 4
    c.loss.center_sigma = 2.0
    c.postprocess.nms_kernel = 3
    c.postprocess.min_stuff_area = 4


def _weighted_mean(values, weights):
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def center_offset_losses(center, offsets, batch):
  """The centre heatmap's MSE and the offsets' L1 (in pixels), each a mean over its weights."""
  mse = _weighted_mean((center.astype(jnp.float32) - batch["center"]) ** 2, batch["center_weight"])
  l1 = _weighted_mean(jnp.abs(offsets.astype(jnp.float32) - batch["offsets"]).sum(-1), batch["offset_weight"])
  return mse, l1


def center_offset_targets(semantic, instance, thing_classes, sigma, ignore_label):
  """Panoptic-DeepLab's targets, in tf.data: each instance summarised by its centre of mass, a
  Gaussian on it in the `center` heatmap, and at every one of its pixels the 2-D `offsets` (dy, dx)
  from the pixel to it; decoding them (peaks, each pixel moved by its offset to the nearest peak)
  gives back the instances.

  semantic, instance: (H, W) int32 maps; instance 0 means "no instance" (on a thing class: crowd).

  Returns center (H, W) float32 in [0, 1], offsets (H, W, 2) float32 in pixels,
  center_weight (H, W) (0 on padding and crowd, where a centre may or may not be),
  offset_weight (H, W) (1 on pixels of thing instances).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (tf.data only: not on the model's path)
  h, w = tf.shape(instance)[0], tf.shape(instance)[1]
  yy, xx = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")
  is_thing = tf.reduce_any(semantic[..., None] == tf.constant(thing_classes, tf.int32), axis=-1)
  labelled = semantic != ignore_label
  # The instances of this crop numbered 0 (none), 1, 2, ...: datasets' own ids (Cityscapes' 26001)
  # are far apart, and the number of instances is known only here.
  raw = tf.reshape(tf.where(is_thing & labelled, instance, 0), [-1])
  numbers, ids = tf.unique(tf.concat([tf.zeros([1], raw.dtype), raw], axis=0))  # 0 first: stays 0
  ids = tf.reshape(ids[1:], [h, w])
  n = tf.size(numbers)
  count = tf.math.unsorted_segment_sum(tf.ones_like(yy), ids, n)
  # Centres are rounded to a pixel, so each heatmap peak is one pixel of value 1.
  cy = tf.round(tf.math.unsorted_segment_sum(yy, ids, n) / tf.maximum(count, 1.0))
  cx = tf.round(tf.math.unsorted_segment_sum(xx, ids, n) / tf.maximum(count, 1.0))
  present = tf.where((count > 0) & (tf.range(n) > 0))[:, 0]
  # One separable Gaussian per instance present (not per slot: 129 slots of 512x1024 would be
  # 270 MB per crop); the heatmap is their maximum, 0 where there is none.
  gy = tf.exp(-(tf.range(h, dtype=tf.float32)[None] - tf.gather(cy, present)[:, None]) ** 2 / (2.0 * sigma**2))
  gx = tf.exp(-(tf.range(w, dtype=tf.float32)[None] - tf.gather(cx, present)[:, None]) ** 2 / (2.0 * sigma**2))
  center = tf.reduce_max(tf.concat([tf.zeros([1, h, w]), gy[:, :, None] * gx[:, None, :]], axis=0), axis=0)
  has_instance = ids > 0
  offsets = tf.stack([tf.gather(cy, ids) - yy, tf.gather(cx, ids) - xx], axis=-1)
  offsets = offsets * tf.cast(has_instance, tf.float32)[..., None]
  return {
      "center": center,
      "offsets": offsets,
      "center_weight": tf.cast(labelled & ~(is_thing & (instance == 0)), tf.float32),
      "offset_weight": tf.cast(has_instance, tf.float32),
  }



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
