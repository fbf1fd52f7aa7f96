"""Panoptic-DeepLab targets from an instance-id map, made in tf.data beside the augmentation.

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
