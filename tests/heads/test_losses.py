"""The losses against NumPy references on hand-made cases."""
import ml_collections
import numpy as np
import pytest

from segjax import heads
from segjax.heads import losses


def _cross_entropy(logits, labels):
  z = logits - logits.max(-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]


def reference_cross_entropy(logits, labels, ignore_label, top_k):
  """segjax's convention in plain NumPy: per image, ignored pixels are zeros among the candidates,
  the mean is over k = int(top_k * pixels), and images are averaged."""
  logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
  valid = labels != ignore_label
  per_pixel = np.where(valid, _cross_entropy(logits, np.where(valid, labels, 0)), 0.0)
  if top_k >= 1.0:
    return per_pixel.sum() / max(valid.sum(), 1)
  flat = per_pixel.reshape(len(per_pixel), -1)
  k = max(int(top_k * flat.shape[1]), 1)
  return np.mean([np.sort(row)[::-1][:k].mean() for row in flat])


def test_top_k_counts_ignored_pixels_as_zeros_in_the_mean():
  # The case: one 4x4 image, 2 labelled pixels, a uniform prediction over 3 classes.
  labels = np.full((1, 4, 4), 255)
  labels[0, 0, :2] = (1, 2)
  logits = np.zeros((1, 4, 4, 3), np.float32)
  got = float(losses.semantic_cross_entropy(logits, labels, 255, top_k=0.5))
  assert got == pytest.approx(2 * np.log(3) / 8, rel=1e-6)  # not ln 3, the mean over labelled pixels
  assert got == pytest.approx(reference_cross_entropy(logits, labels, 255, 0.5), rel=1e-6)
  assert float(losses.semantic_cross_entropy(logits, labels, 255)) == pytest.approx(np.log(3), rel=1e-6)


@pytest.mark.parametrize("top_k", [1.0, 0.5, 0.2, 0.01])
def test_cross_entropy_equals_the_numpy_reference(top_k):
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(3, 5, 6, 4)).astype(np.float32) * 3
  labels = rng.integers(0, 4, (3, 5, 6))
  labels[rng.random((3, 5, 6)) < 0.3] = 255
  labels[2, :4] = 255  # one image mostly ignored: per image and per batch top-k differ here
  got = float(losses.semantic_cross_entropy(logits, labels, 255, top_k=top_k))
  assert got == pytest.approx(reference_cross_entropy(logits, labels, 255, top_k), rel=1e-5)


def test_top_k_is_taken_per_image_not_over_the_batch():
  logits = np.zeros((2, 2, 2, 2), np.float32)
  logits[0, ..., 0] = 5.0  # image 0: confident and right (label 0), image 1: uniform
  labels = np.zeros((2, 2, 2), int)
  per_image = (_cross_entropy(logits[0], labels[0]).max() + np.log(2)) / 2
  got = float(losses.semantic_cross_entropy(logits, labels, 255, top_k=0.25))
  assert got == pytest.approx(per_image, rel=1e-5)  # over the batch it would be ln 2


def test_instance_losses_are_weighted_means():
  config = ml_collections.ConfigDict(dict(loss=dict(semantic_top_k=1.0, semantic_weight=2.0, center_weight=10.0,
                                                    offset_weight=0.5), dataset=dict(ignore_label=255)))
  outputs = {"semantic_logits": np.zeros((1, 1, 2, 2), np.float32),
             "center": np.array([[[0.5, 1.0]]], np.float32),
             "offsets": np.array([[[[1.0, -2.0], [3.0, 0.0]]]], np.float32)}
  batch = {"semantic": np.zeros((1, 1, 2), int), "center": np.array([[[0.0, 0.0]]], np.float32),
           "center_weight": np.array([[[1.0, 0.0]]], np.float32),
           "offsets": np.zeros((1, 1, 2, 2), np.float32),
           "offset_weight": np.array([[[0.0, 1.0]]], np.float32)}
  loss, parts = heads.HEADS["panoptic_deeplab"].loss(outputs, batch, config)
  assert float(parts["center_mse"]) == pytest.approx(0.25)  # pixel 1 has weight 0
  assert float(parts["offset_l1"]) == pytest.approx(3.0)  # |3| + |0| on the one weighted pixel
  assert float(loss) == pytest.approx(2 * np.log(2) + 10 * 0.25 + 0.5 * 3.0, rel=1e-6)
