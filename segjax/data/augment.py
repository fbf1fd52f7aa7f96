"""Joint augmentation of an image and its label maps, stateless: the same `seed` gives the same crop."""
import tensorflow as tf


def scale_crop_flip(image, labels, seed, crop_size, min_scale, max_scale, flip, ignore_label, base_size=None):
  """Random scale, crop and horizontal flip applied identically to image and labels.

  image: (H, W, 3) uint8; labels: (H, W, K) int32 maps (semantic, instance, ...), resized with
  nearest neighbour and padded with `ignore_label`. The scale is of the image as it comes or, with
  `base_size`, of the image resized to fit it (segjax.data.buckets.base_scaled: mmsegmentation's
  RandomResize(scale=base_size, ratio_range=(min_scale, max_scale), keep_ratio=True)). Returns
  image float32 in [0, 1] and labels int32, both crop_size = (height, width).
  """
  crop_h, crop_w = crop_size
  seeds = tf.random.experimental.stateless_split(seed, 3)
  size = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = tf.random.stateless_uniform([], seeds[0], min_scale, max_scale)
  if base_size:
    scale *= tf.minimum(max(base_size) / tf.reduce_max(size), min(base_size) / tf.reduce_min(size))
  new_size = tf.cast(tf.round(size * scale), tf.int32)
  image = tf.image.resize(image, new_size, "bilinear")
  labels = tf.image.resize(labels, new_size, "nearest")
  # Pad up to the crop; padded pixels get ignore_label, so they add nothing to the loss.
  pad_h = tf.maximum(crop_h - new_size[0], 0)
  pad_w = tf.maximum(crop_w - new_size[1], 0)
  image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
  labels = tf.pad(labels, [[0, pad_h], [0, pad_w], [0, 0]], constant_values=ignore_label)
  # One crop of the stacked channels keeps image and labels aligned; float32 holds every label
  # exactly (ids < 2^24).
  stacked = tf.concat([image, tf.cast(labels, tf.float32)], axis=-1)
  depth = tf.shape(stacked)[-1]
  stacked = tf.image.stateless_random_crop(stacked, [crop_h, crop_w, depth], seeds[1])
  if flip:
    stacked = tf.image.stateless_random_flip_left_right(stacked, seeds[2])
  image = tf.clip_by_value(stacked[..., :3] / 255.0, 0.0, 1.0)
  labels = tf.cast(stacked[..., 3:], tf.int32)
  return image, labels
