"""Targets made in tf.data beside the augmentation: Panoptic-DeepLab's from an instance-id map, and
mask classification's set of segments.

Each instance is summarised by its centre of mass: a Gaussian on it in the `center` heatmap, and at
every one of its pixels the 2-D `offsets` (dy, dx) from the pixel to it. Decoding the targets (peaks
of the heatmap, each pixel moved by its offset to the nearest peak) gives back the instances.
"""
import tensorflow as tf


def center_offset_targets(semantic, instance, thing_classes, sigma, ignore_label):
  """semantic, instance: (H, W) int32 maps; instance 0 means "no instance" (on a thing class: crowd).

  Returns center (H, W) float32 in [0, 1], offsets (H, W, 2) float32 in pixels,
  center_weight (H, W) (0 on padding and crowd, where a centre may or may not be),
  offset_weight (H, W) (1 on pixels of thing instances).
  """
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


def segment_targets(semantic, instance, thing_classes, ignore_label, max_segments):
  """Mask classification targets: the crop's segments (each thing instance; all pixels of one stuff
  class) as a padded set of `max_segments`, the largest kept when there are more.

  Returns segments (H, W) int32, the slot of each pixel's segment (-1: in none: ignored, crowd),
  segment_classes (max_segments,) int32 and segment_valid (max_segments,) bool. The masks are the
  slots of the one map, so a set of 100 costs one (H, W) map, not 100.
  """
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
