"""Eval images grouped by size: a few canvas shapes, each compiled once, instead of every image
padded to the largest (ADE20K's 1600x1600 canvas is ~7x the pixels of its typical 683x512 image).
No TensorFlow here: the plan is plain arithmetic on sizes read from the images' headers."""
import io
from typing import NamedTuple

import numpy as np
from PIL import Image


def encoded_size(encoded):
  """(height, width) of an encoded PNG or JPEG from its header, without decoding the pixels."""
  with Image.open(io.BytesIO(encoded)) as im:
    return im.height, im.width


class Bucket(NamedTuple):
  canvas: tuple  # (height, width) the model's inputs are padded to
  label_canvas: tuple  # (height, width) of the labels and of the outputs scored against them
  indices: tuple  # positions in the split, ascending


def _order(sizes):
  """Landscape before portrait, each by its longer then shorter side: neighbours in this order
  share a canvas with little padding."""
  h, w = sizes[:, 0], sizes[:, 1]
  return np.lexsort((np.minimum(h, w), np.maximum(h, w), h > w))


def plan(input_sizes, label_sizes, max_buckets, multiple=1):
  """At most `max_buckets` canvases for images of `input_sizes` (N, 2), chosen to pad the fewest
  pixels: the images, in _order, cut into contiguous runs by dynamic programming, each run padded
  to its largest height and width rounded up to `multiple` (a model's deepest stride: a ViT drops
  the pixels past its last whole patch). `label_sizes` (N, 2): each image's size before base_size."""
  sizes = -(-np.asarray(input_sizes, np.int64).reshape(-1, 2) // multiple) * multiple
  labels = np.asarray(label_sizes, np.int64).reshape(-1, 2)
  if not len(sizes):
    return []
  unique, members = np.unique(sizes, axis=0, return_inverse=True)
  members = members.reshape(-1)
  order = _order(unique)
  unique = unique[order]
  rank = np.empty(len(order), np.int64)
  rank[order] = np.arange(len(order))
  count = np.bincount(rank[members], minlength=len(unique))
  n = len(unique)
  # cost[i, j]: pixels padded when unique sizes i..j share one canvas.
  area = np.cumsum(count * unique[:, 0] * unique[:, 1])
  images = np.cumsum(count)
  cost = np.full((n, n), np.inf)
  for i in range(n):
    tall = np.maximum.accumulate(unique[i:, 0])
    wide = np.maximum.accumulate(unique[i:, 1])
    held = images[i:] - (images[i - 1] if i else 0)
    cost[i, i:] = held * tall * wide - (area[i:] - (area[i - 1] if i else 0))
  k = max(1, min(max_buckets, n))
  best = np.full((k + 1, n + 1), np.inf)  # best[b, j]: the first j sizes in b canvases
  cut = np.zeros((k + 1, n + 1), np.int64)
  best[0, 0] = 0
  for b in range(1, k + 1):
    for j in range(1, n + 1):
      options = best[b - 1, :j] + cost[:j, j - 1]
      cut[b, j] = int(np.argmin(options))
      best[b, j] = options[cut[b, j]]
  b = int(np.argmin(best[1:, n])) + 1  # fewer canvases when more would pad no less
  runs, j = [], n
  while j:
    runs.append((cut[b, j], j))
    j, b = cut[b, j], b - 1
  buckets = []
  for start, stop in reversed(runs):
    chosen = np.nonzero((rank[members] >= start) & (rank[members] < stop))[0]
    buckets.append(Bucket(tuple(int(v) for v in sizes[chosen].max(0)),
                          tuple(int(v) for v in labels[chosen].max(0)), tuple(int(i) for i in chosen)))
  return buckets


def padded_share(input_sizes, buckets):
  """The share of the canvases' pixels that are padding (each bucket's padding examples aside)."""
  sizes = np.asarray(input_sizes, np.int64).reshape(-1, 2)
  canvas = sum(len(b.indices) * b.canvas[0] * b.canvas[1] for b in buckets)
  return 1.0 - float(np.sum(sizes[:, 0] * sizes[:, 1])) / canvas if canvas else 0.0
