"""Pictures for people: label maps in colour, side by side with the image."""
import numpy as np


def palette(n):
  """n distinct RGB colours; index 0 (background) is black."""
  rng = np.random.default_rng(7)
  colours = rng.integers(64, 256, size=(max(n, 1), 3)).astype(np.uint8)
  colours[0] = 0
  return colours


def colorize(labels, num_classes, ignore_label=255, colormap=None):
  """(..., H, W) integer labels -> (..., H, W, 3) uint8 in the dataset's colours (`colormap`, RGB
  per class) or a generated palette; ignored pixels white."""
  colours = palette(num_classes) if colormap is None else np.asarray(colormap, np.uint8)
  colours = np.concatenate([colours, [[255, 255, 255]]]).astype(np.uint8)
  labels = np.where(labels == ignore_label, num_classes, np.clip(labels, 0, num_classes - 1))
  return colours[labels]


def side_by_side(images, truth, pred, num_classes, ignore_label=255, colormap=None):
  """(N, H, 3W, 3) uint8 rows of image | ground truth | prediction."""
  images = np.clip(np.asarray(images) * 255, 0, 255).astype(np.uint8)
  return np.concatenate([images, colorize(truth, num_classes, ignore_label, colormap),
                         colorize(pred, num_classes, ignore_label, colormap)], axis=2)


def at_label_size(images, input_sizes, sizes, canvas):
  """Images resized to a base size (their `input_sizes` (N, 2) corners of `images`) shown at their
  own `sizes` (N, 2), top-left on a `canvas` (height, width) like their labels; nearest neighbour."""
  images = np.asarray(images)
  out = np.zeros((len(images), *canvas, images.shape[-1]), images.dtype)
  for i, ((ih, iw), (h, w)) in enumerate(zip(np.asarray(input_sizes), np.asarray(sizes))):
    if h and w:
      rows = np.minimum((np.arange(h) + 0.5) * ih / h, ih - 1).astype(int)
      cols = np.minimum((np.arange(w) + 0.5) * iw / w, iw - 1).astype(int)
      out[i, :h, :w] = images[i][rows][:, cols]
  return out
