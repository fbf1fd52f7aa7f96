"""Joint augmentation: image and labels move together, labels are resized by nearest neighbour."""
import numpy as np
import pytest
import tensorflow as tf

from segjax.data import augment


def _augment(image, labels, seed, crop_size, scale, flip=False):
  crop_size = crop_size if isinstance(crop_size, tuple) else (crop_size, crop_size)
  img, lab = augment.scale_crop_flip(tf.constant(image), tf.constant(labels.astype(np.int32)),
                                     tf.constant(seed), crop_size=crop_size, min_scale=scale, max_scale=scale,
                                     flip=flip, ignore_label=255)
  return img.numpy(), lab.numpy()


def nearest(labels, size):
  """Nearest-neighbour resize with half-pixel centres (pixel o samples source floor((o + 0.5) * in / out)),
  tf.image's convention, in NumPy."""
  h, w = labels.shape[:2]
  ys = np.minimum(np.floor((np.arange(size[0]) + 0.5) * h / size[0]).astype(int), h - 1)
  xs = np.minimum(np.floor((np.arange(size[1]) + 0.5) * w / size[1]).astype(int), w - 1)
  return labels[ys][:, xs]


def test_flip_and_crop_move_image_and_labels_together():
  labels = np.random.default_rng(0).integers(0, 4, (32, 32, 1)).astype(np.uint8)
  image = np.repeat(labels * 60, 3, axis=-1).astype(np.uint8)  # the image spells out its labels
  flipped = 0
  for s in range(16):
    img, lab = _augment(image, labels, [s, 1], crop_size=24, scale=1.0, flip=True)
    np.testing.assert_allclose(np.round(img[..., 0] * 255 / 60), lab[..., 0])
    # Find the crop in the original to learn whether it was flipped.
    found = [f for f in (False, True) for y in range(9) for x in range(9)
             if np.array_equal((labels[:, ::-1] if f else labels)[y:y + 24, x:x + 24], lab)]
    assert found
    flipped += found[0]
  assert 0 < flipped < 16


def test_rectangular_crop_keeps_instance_ids_above_255():
  rng = np.random.default_rng(3)
  labels = np.stack([rng.integers(0, 19, (30, 50)), rng.integers(0, 34, (30, 50)) * 1000 + 999], -1)
  for s in range(4):
    _, lab = _augment(np.zeros((30, 50, 3), np.uint8), labels, [s, 2], crop_size=(16, 40), scale=1.0)
    assert lab.shape == (16, 40, 2) and lab.dtype == np.int32
    assert any(np.array_equal(labels[y:y + 16, x:x + 40], lab) for y in range(15) for x in range(11))


@pytest.mark.parametrize("seed", [[3, 4], [5, 6]])
def test_upscaled_labels_are_nearest_neighbour(seed):
  labels = np.random.default_rng(1).integers(0, 4, (32, 32, 2)).astype(np.uint8)
  labels[..., 1] *= 50  # a second map (instance ids) with values far apart
  _, lab = _augment(np.zeros((32, 32, 3), np.uint8), labels, seed, crop_size=64, scale=2.0)
  np.testing.assert_array_equal(lab, nearest(labels, (64, 64)))  # each label pixel becomes 2x2


def test_downscaled_labels_are_nearest_neighbour_and_padded_with_ignore():
  labels = np.random.default_rng(2).integers(0, 4, (32, 32, 1)).astype(np.uint8)
  image = np.full((32, 32, 3), 200, np.uint8)
  img, lab = _augment(image, labels, [7, 8], crop_size=16, scale=0.5)
  np.testing.assert_array_equal(lab, nearest(labels, (16, 16)))
  img, lab = _augment(image, labels, [7, 8], crop_size=20, scale=0.5)  # 16x16 placed in a 20x20 crop
  inside = np.zeros((20, 20), bool)
  ys, xs = np.nonzero(lab[..., 0] != 255)
  inside[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
  assert inside.sum() == 256
  np.testing.assert_array_equal(lab[inside].reshape(16, 16), nearest(labels, (16, 16))[..., 0])
  np.testing.assert_allclose(img[inside], 200 / 255, atol=1e-6)
  assert np.all(img[~inside] == 0)  # padded pixels are black, and their labels are ignored


@pytest.mark.parametrize("size,scale,expected", [
    ((40, 28), 1.0, (46, 32)),  # to fit (64, 32): the short side to 32, 40 * 32/28 = 45.7
    ((40, 28), 0.5, (23, 16)),  # then the random factor
    ((16, 48), 2.0, (43, 128)),  # the long side decides: 48 -> 64, 16 * 64/48 * 2 = 42.7
])
def test_base_size_scales_the_image_that_fits_it(size, scale, expected):
  labels = np.arange(size[0] * size[1]).reshape(*size, 1) % 7
  image = np.repeat(labels * 30, 3, axis=-1).astype(np.uint8)
  img, lab = augment.scale_crop_flip(tf.constant(image), tf.constant(labels.astype(np.int32)), tf.constant([1, 2]),
                                     crop_size=expected, min_scale=scale, max_scale=scale, flip=False,
                                     ignore_label=255, base_size=(64, 32))
  assert not (lab.numpy() == 255).any()  # the crop is the whole resized image: nothing padded
  np.testing.assert_array_equal(lab.numpy(), nearest(labels, expected))
