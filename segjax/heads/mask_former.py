"""Mask classification (Mask2Former; config.model.head="mask_former"): N queries, each a class or
"no object" and a mask, matched one to one to the crop's segments by the Hungarian algorithm on
device; losses on sampled points. Its decoder's keyword arguments in config.model.decoder_kwargs
(segjax/models/mask_former_decoder.py), loss weights and points in config.loss, thresholds in
config.postprocess.
"""
import functools

import jax
import jax.numpy as jnp
import optax

from segjax import checks
from segjax.errors import UserError
from segjax.heads import losses, matcher
from segjax.heads.head import VOID, Head
from segjax.heads.semantic import Semantic, pixel_accuracy
from segjax.models.mask_former_decoder import MASK_DECODERS, MaskFormerDecoder
from segjax.models.segmenter import build


class MaskFormer(Head):
  label_keys = ("semantic", "instance")
  metrics = ("semantic", "instances", "panoptic")
  outputs = {"class_logits": "global", "mask_logits": "dense"}
  defaults = {
      "model": {"decoder": "mask_former", "decoder_kwargs": {}},
      "loss": {
          # The auxiliary per-pixel loss's (decoder_kwargs.aux_semantic): as the semantic head's.
          **Semantic.defaults["loss"],
          # Mask2Former's matching costs and loss weights of the class, the mask's sigmoid
          # cross-entropy and its dice; the "no object" class's weight; points per mask.
          "class_weight": 2.0,
          "mask_weight": 5.0,
          "dice_weight": 5.0,
          "no_object_weight": 0.1,
          "num_points": 12544,  # 112 * 112
          "oversample_ratio": 3.0,  # points drawn per point kept, for the uncertainty sampling
          "importance_sample_ratio": 0.75,  # share of the kept points that are the most uncertain
          "max_segments": 100,  # target segments per image; a crop with more keeps the largest
      },
      # A query is kept when its class score is above this, and its segment when it keeps this
      # share of its own mask after overlaps are resolved (Mask2Former's 0.8 and 0.8).
      "postprocess": {"object_mask_threshold": 0.8, "overlap_threshold": 0.8},
  }
  rules = {
      **Semantic.rules,
      **{f"loss.{k}": checks.WEIGHT for k in ("class_weight", "mask_weight", "dice_weight", "no_object_weight")},
      "loss.num_points": checks.AT_LEAST_1,
      "loss.oversample_ratio": checks.number_in(lambda v: v >= 1, ">= 1"),
      "loss.importance_sample_ratio": checks.UNIT,
      "loss.max_segments": checks.AT_LEAST_1,
      "postprocess.object_mask_threshold": checks.UNIT,
      "postprocess.overlap_threshold": checks.UNIT,
  }

  def modules(self, model_config, num_classes, dtype):
    # The scope keeps its name from when decoders were called heads: checkpoints read as before.
    return (("head", build(MASK_DECODERS, model_config, "decoder", num_classes=num_classes, dtype=dtype), None),)

  def check(self, config):
    queries = self._queries(config)
    if config.eval.mode != "whole":
      raise UserError(f"config.eval.mode is '{config.eval.mode}', but mask_former's queries are one set per "
                      "image, which sliding windows cannot stitch: use config.eval.mode='whole'.")
    if config.loss.max_segments > queries:
      raise UserError(f"config.loss.max_segments is {config.loss.max_segments}, more than the "
                      f"{queries} queries of config.model.decoder_kwargs.num_queries: each segment needs a "
                      "query of its own; give at most as many segments as queries.")
    divisor = config.dataset.label_divisor
    if divisor is not None and queries >= divisor:
      raise UserError(f"config.model.decoder_kwargs.num_queries is {queries}, not below config.dataset."
                      f"label_divisor={divisor}: instance ids would run into the next class's panoptic ids.")

  def _queries(self, config):
    return config.model.decoder_kwargs.get("num_queries", MaskFormerDecoder.num_queries)

  def targets(self, semantic, instance, config):
    return segment_targets(semantic, instance, tuple(config.dataset.thing_classes),
                           config.dataset.ignore_label, config.loss.max_segments)

  def synthetic_targets(self, config, key, n, size):
    m, (a, b) = config.loss.max_segments, jax.random.split(key)
    return {"segments": jax.random.randint(a, (n, size, size), -1, m),
            "segment_classes": jax.random.randint(b, (n, m), 0, config.dataset.num_classes),
            "segment_valid": jnp.ones((n, m), bool)}

  def loss(self, outputs, batch, config, key):
    classes, masks = outputs["class_logits"], outputs["mask_logits"]  # (B, L + 1, ...): every layer's
    b, layers = classes.shape[:2]
    keys = jax.random.split(key, b * layers).reshape(b, layers)
    per_image = functools.partial(_image_losses, loss_config=config.loss)
    over_layers = jax.vmap(per_image, in_axes=(0, 0, None, None, None, 0))
    ce, weight, bce, dice = jax.vmap(over_layers)(classes, masks, batch["segments"], batch["segment_classes"],
                                                  batch["segment_valid"], keys)  # each (B, L + 1)
    num_masks = jnp.maximum(jnp.sum(batch["segment_valid"]), 1)
    ce, bce, dice = ce.sum(0) / weight.sum(0), bce.sum(0) / num_masks, dice.sum(0) / num_masks
    lc = config.loss
    loss = jnp.sum(lc.class_weight * ce + lc.mask_weight * bce + lc.dice_weight * dice)  # with every aux layer
    parts = {"class_ce": ce[-1], "mask_ce": bce[-1], "mask_dice": dice[-1],
             "pixel_acc": _pixel_accuracy(classes[:, -1], masks[:, -1], batch["semantic"],
                                          config.dataset.ignore_label)}
    if "aux_semantic_logits" in outputs:  # decoder_kwargs.aux_semantic
      # At its own stride 4, on the labels there: upsampled to the crop, it took a tenth of a CPU
      # step, and it is there to teach the backbone shapes, not borders.
      logits = outputs["aux_semantic_logits"]
      parts["semantic_ce"] = losses.semantic_cross_entropy(logits, _on_grid(batch["semantic"], *logits.shape[1:3]),
                                                           config.dataset.ignore_label, lc.semantic_top_k)
      loss = loss + lc.semantic_weight * parts["semantic_ce"]
    return loss, parts

  def postprocess(self, outputs, config, sort=False):
    pp, ds = config.postprocess, config.dataset
    return jax.vmap(functools.partial(
        _inference, thing_classes=tuple(ds.thing_classes), label_divisor=ds.label_divisor,
        object_threshold=pp.object_mask_threshold, overlap_threshold=pp.overlap_threshold))(
            outputs["class_logits"], outputs["mask_logits"])

  def tiny(self, c):
    c.model.decoder_kwargs.update(num_queries=8, hidden=16, mask_dim=16, layers=3, heads=2, ffn=32)
    c.loss.num_points, c.loss.max_segments = 64, 8


def _image_losses(class_logits, mask_logits, segments, target_classes, valid, key, *, loss_config):
  """One image's and one layer's (class CE sum, its weight, mask CE sum, dice sum): Q queries'
  class_logits (Q, C + 1) and mask_logits (h, w, Q); targets as segment_targets makes them."""
  lc, num_classes = loss_config, class_logits.shape[-1] - 1
  m, match_key, sample_key = target_classes.shape[0], *jax.random.split(key)
  class_logits = class_logits.astype(jnp.float32)
  # Matching costs on the same uniform points for predictions and targets (Mask2Former's matcher).
  points = jax.random.uniform(match_key, (lc.num_points, 2))
  predicted = losses.point_sample(mask_logits, points).T  # (Q, P)
  truth = (losses.label_at(segments, points)[None] == jnp.arange(m)[:, None]).astype(jnp.float32)  # (M, P)
  mask_ce, mask_dice = losses.pairwise_mask_costs(predicted, truth)
  class_cost = -jax.nn.softmax(class_logits)[:, target_classes]
  cost = lc.class_weight * class_cost + lc.mask_weight * mask_ce + lc.dice_weight * mask_dice
  matched = matcher.match(jax.lax.stop_gradient(cost), valid)
  # Every query learns its class: the matched one its segment's, the others "no object".
  wanted = jnp.full(class_logits.shape[0], num_classes).at[matched].set(jnp.where(valid, target_classes, num_classes))
  weight = jnp.where(wanted == num_classes, lc.no_object_weight, 1.0)
  ce = optax.softmax_cross_entropy_with_integer_labels(class_logits, wanted)
  # Matched masks on points where they are least certain (plus random ones).
  chosen = jnp.moveaxis(mask_logits[..., matched], -1, 0)[..., None]  # (M, h, w, 1)
  at = jax.vmap(lambda mask, pts: losses.point_sample(mask, pts)[:, 0])
  points = losses.uncertain_points(sample_key, lambda pts: at(chosen, pts), m, lc.num_points,
                                   lc.oversample_ratio, lc.importance_sample_ratio)
  logits = at(chosen, points)
  truth = (jax.vmap(losses.label_at, in_axes=(None, 0))(segments, points) == jnp.arange(m)[:, None])
  truth = truth.astype(jnp.float32)
  return (jnp.sum(ce * weight), jnp.sum(weight), jnp.sum(losses.sigmoid_ce(logits, truth) * valid),
          jnp.sum(losses.dice(logits, truth) * valid))


def _semantic_probabilities(class_logits, mask_logits):
  """Mask2Former's semantic inference: each class's probability summed over queries, weighted by
  their masks; (..., H, W, C)."""
  probs = jax.nn.softmax(class_logits.astype(jnp.float32), -1)[..., :-1]
  return jnp.einsum("...qc,...hwq->...hwc", probs, jax.nn.sigmoid(mask_logits.astype(jnp.float32)))


def _on_grid(labels, h, w):
  """Label maps (N, H, W) at the pixels an (h, w) map of stride H // h falls on."""
  step = labels.shape[1] // h, labels.shape[2] // w
  return labels[:, step[0] // 2::step[0], step[1] // 2::step[1]][:, :h, :w]


def _pixel_accuracy(class_logits, mask_logits, labels, ignore_label):
  """Pixel accuracy of the last layer's semantic map (stride 4) at the pixels it falls on."""
  probs = _semantic_probabilities(class_logits, mask_logits)
  return pixel_accuracy(probs, _on_grid(labels, *probs.shape[1:3]), ignore_label)


def _inference(class_logits, mask_logits, *, thing_classes, label_divisor, object_threshold, overlap_threshold):
  """One image's common outputs, as Mask2Former's semantic and panoptic inference, with static
  shapes: the Q queries are the instance slots.

  A query is kept when its most probable class is not "no object" and scores above
  `object_threshold`; each pixel goes to the kept query of the highest score * mask probability,
  if that mask is on there; a query keeps its segment when the segment is at least
  `overlap_threshold` of its own mask. Thing segments are instances, scored as Mask2Former and EoMT
  score theirs: class score times the mask's mean probability where it is on, over the whole mask
  (the mean inside the segment ranked instances worse: mask AP 0.495 against 0.505 on a run of
  configs/eomt_panoptic.py); stuff segments of one class merge.
  """
  num_classes = class_logits.shape[-1] - 1
  probs = jax.nn.softmax(class_logits.astype(jnp.float32), -1)
  logits = mask_logits.astype(jnp.float32)  # (H, W, Q)
  masks = jax.nn.sigmoid(logits)
  semantic = jnp.argmax(_semantic_probabilities(class_logits, mask_logits), -1).astype(jnp.int32)
  score, label = probs.max(-1), jnp.argmax(probs, -1)
  keep = (label != num_classes) & (score > object_threshold)
  q = masks.shape[-1]
  owner = jnp.argmax(jnp.where(keep, score * masks, -1.0), -1)  # (H, W)
  # A mask is on where its probability is at least 0.5, read from the logits (>= 0): the
  # full-size comparisons then wait for no sigmoid (0.45 ms an image on XLA's CPU backend).
  owned = jnp.take_along_axis(logits, owner[..., None], -1)[..., 0]  # each pixel's logit in its owner
  claimed = keep[owner] & (owned >= 0)
  won = jnp.bincount(jnp.where(keep[owner], owner, q).ravel(), length=q + 1)[:q]
  own = pixel_sum((logits >= 0).astype(jnp.float32).reshape(-1, q)).astype(jnp.int32)
  # The mask's mean probability where it is on, on every 4th pixel of each axis: masks come from
  # stride 4 or coarser, and the mean over every pixel took XLA's CPU backend longer than the rest
  # of this function. A mask on no pixel of that grid scores 0.5, the least its pixels hold.
  at = (slice(min(2, masks.shape[0] - 1), None, 4), slice(min(2, masks.shape[1] - 1), None, 4))
  grid, on_grid = masks[at].reshape(-1, q), (logits[at] >= 0).reshape(-1, q).astype(jnp.float32)
  sums = pixel_sum(jnp.concatenate([on_grid, on_grid * grid], -1))
  mask_score = jnp.where(sums[:q] > 0, sums[q:] / jnp.maximum(sums[:q], 1.0), 0.5)
  final = jnp.bincount(jnp.where(claimed, owner, q).ravel(), length=q + 1)[:q]
  segment = keep & (final > 0) & (own > 0) & (won >= overlap_threshold * own)
  on = claimed & segment[owner]
  label = jnp.minimum(label, num_classes - 1).astype(jnp.int32)
  thing = jnp.zeros(num_classes, bool).at[jnp.asarray(thing_classes, jnp.int32)].set(True)[label]
  panoptic = jnp.where(on, label[owner] * label_divisor + jnp.where(thing[owner], owner + 1, 0), VOID)
  valid = segment & thing
  instances = {"instance_map": jnp.where(on & thing[owner], owner + 1, 0).astype(jnp.int32), "valid": valid,
               "classes": label, "scores": jnp.where(valid, score * mask_score, 0.0)}
  return {"semantic": semantic, "instances": instances, "panoptic": panoptic.astype(jnp.int32)}


def pixel_sum(x):
  """x (P, ...) summed over its first axis by adding halves: XLA's CPU backend runs jnp.sum over an
  image's pixels 10x slower (a count per query at 256x256, 1.2 ms against 0.1). Counts stay exact
  below 2**24."""
  while x.shape[0] > 1:
    half = x.shape[0] // 2
    x = jnp.concatenate([x[:half] + x[half:2 * half], x[2 * half:]])
  return x[0]


def segment_targets(semantic, instance, thing_classes, ignore_label, max_segments):
  """Mask classification targets, in tf.data: the crop's segments (each thing instance; all pixels of one stuff
  class) as a padded set of `max_segments`, the largest kept when there are more.

  Returns segments (H, W) int32, the slot of each pixel's segment (-1: in none: ignored, crowd),
  segment_classes (max_segments,) int32 and segment_valid (max_segments,) bool. The masks are the
  slots of the one map, so a set of 100 costs one (H, W) map, not 100.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (tf.data only: not on the model's path)
  semantic, instance = tf.cast(semantic, tf.int64), tf.cast(instance, tf.int64)
  h, w = tf.shape(semantic)[0], tf.shape(semantic)[1]
  is_thing = tf.reduce_any(semantic[..., None] == tf.constant(thing_classes, tf.int64), axis=-1)
  labelled = (semantic != ignore_label) & ~(is_thing & (instance == 0))  # crowd: in no segment
  key = semantic * 2**32 + tf.where(is_thing, instance, 0)
  key = tf.reshape(tf.where(labelled, key, -1), [-1])
  keys, ids = tf.unique(tf.concat([[-1], key], axis=0))  # -1 first: none is segment 0
  n = tf.size(keys)
  area = tf.math.unsorted_segment_sum(tf.ones_like(ids), ids, n)[1:]
  order = tf.argsort(area, direction="DESCENDING", stable=True)[:max_segments]
  slot = tf.tensor_scatter_nd_update(tf.fill([n - 1], -1), order[:, None], tf.range(tf.size(order)))
  segments = tf.gather(tf.concat([[-1], slot], axis=0), ids[1:])
  classes = tf.cast(tf.gather(keys[1:], order) // 2**32, tf.int32)
  pad = max_segments - tf.size(order)
  return {"segments": tf.reshape(segments, [h, w]),
          "segment_classes": tf.pad(classes, [[0, pad]]),
          "segment_valid": tf.pad(tf.ones_like(classes, tf.bool), [[0, pad]])}
