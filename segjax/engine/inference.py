"""The one inference function: variables and images in, the common outputs out (semantic map, and
with an instance head the instances and panoptic map), under the evaluation protocol the config
names, all inside jit with static shapes; the config's head (segjax.heads) post-processes. Eval,
predict, the benchmark and export call it.

Protocols (`config.eval`): the whole image at once, or sliding windows whose logits are averaged
where they overlap; either at several scales and optionally mirrored, the dense outputs resized
back to the image's size (bilinear without antialiasing, as mmsegmentation resizes) and averaged
as the heads declare (Head.outputs): class probabilities as mmsegmentation's test-time augmentation
averages them, maps as they are. Displacements (Panoptic-DeepLab's offsets) are not values: a
mirrored pass's x offsets change sign, and a pass at scale s predicts offsets s times too long.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from segjax import config as config_lib
from segjax import heads


class Protocol(NamedTuple):
  mode: str  # whole | slide
  window: tuple  # (height, width) of a sliding window
  stride: tuple  # (height, width) between windows
  margin: tuple  # pixels of a window's inner borders left out of the average
  scales: tuple
  flip: bool


def protocol(config):
  """The validated `config.eval` protocol (checked in segjax.config.eval_protocol, which validation
  runs before any work); a sliding window defaults to the training crop and a stride of two thirds
  of it (mmsegmentation's 769/513 on Cityscapes)."""
  return Protocol(*config_lib.eval_protocol(config))


def _starts(length, window, stride):
  """Where each window begins along one axis: every `stride`, the last flush with the end."""
  if length <= window:
    return [0]
  return sorted({min(i * stride, length - window) for i in range(-(-(length - window) // stride) + 1)})


def _weight(start, window, length, margin):
  """1 where a window's pixel counts in the average: all but `margin` pixels at its inner edges."""
  w = np.ones(window, np.float32)
  if margin and start > 0:
    w[:margin] = 0
  if margin and start + window < length:
    w[window - margin:] = 0
  return w


def _spread(weight, x):
  """(H, W) weights as a shape that broadcasts against an (N, H, W, ...) output."""
  return weight.reshape((1, *weight.shape) + (1,) * (x.ndim - 3))


def _slide(apply, images, p):
  """Dense outputs of `images` from windows of p.window, one at a time (the memory of one window)."""
  n, h, w, _ = images.shape
  (wh, ww), (sh, sw) = p.window, p.stride
  height, width = max(h, wh), max(w, ww)  # an image smaller than the window is padded to it
  images = jnp.pad(images, ((0, 0), (0, height - h), (0, width - w), (0, 0)))
  ys, xs = _starts(height, wh, sh), _starts(width, ww, sw)
  corners = [(y, x) for y in ys for x in xs]
  if len(corners) == 1:  # one window: the whole-image pass itself, bit for bit
    return jax.tree.map(lambda o: o[:, :h, :w], apply(images))
  crops = jnp.stack([images[:, y:y + wh, x:x + ww] for y, x in corners])
  outs = jax.lax.map(apply, crops)
  whole = [k for k in outs if _kind(k) == "global"]
  if whole:
    raise ValueError(f"Output {whole[0]} is one value per image, which sliding windows cannot stitch: "
                     "use config.eval.mode='whole' with this head.")
  total = jax.tree.map(lambda o: jnp.zeros((n, height, width) + o.shape[4:], o.dtype), outs)
  count = np.zeros((height, width), np.float32)
  for i, (y, x) in enumerate(corners):
    weight = np.outer(_weight(y, wh, height, p.margin[0]), _weight(x, ww, width, p.margin[1]))
    count[y:y + wh, x:x + ww] += weight
    total = jax.tree.map(lambda t, o: t.at[:, y:y + wh, x:x + ww].add(o[i] * _spread(weight, o[i])),
                         total, outs)
  return jax.tree.map(lambda t: (t / _spread(count, t))[:, :h, :w], total)


def _kind(key):
  """How output `key` averages over views, as its head declares (a map unless it says otherwise)."""
  return heads.output_kinds().get(key, "dense")


def _flip(outputs):
  """Mirrors dense outputs left-right; a displacement's x changes sign."""
  flipped = {}
  for k, v in outputs.items():
    kind = _kind(k)
    flipped[k] = v if kind == "global" else jnp.flip(v, axis=2)
    if kind == "displacement":
      flipped[k] = flipped[k] * jnp.array([1.0, -1.0], v.dtype)
  return flipped


def _resize(outputs, size):
  """Dense outputs bilinearly resized to `size`; displacements also scaled by the resize factor."""
  resized = {}
  for k, v in outputs.items():
    kind = _kind(k)
    if kind == "global":
      resized[k] = v
      continue
    n, h, w = v.shape[:3]
    resized[k] = jax.image.resize(v, (n, *size) + v.shape[3:], "bilinear", antialias=False)
    if kind == "displacement":
      resized[k] = resized[k] * jnp.array([size[0] / h, size[1] / w], v.dtype)
  return resized


def dense_outputs(apply, images, p):
  """The model's dense outputs for `images` (N, H, W, 3) at (H, W), averaged over the protocol's
  scales and flips (semantic logits then as log mean probabilities); `apply` maps images to a dict
  of dense outputs at their size."""
  size = images.shape[1:3]
  one_pass = functools.partial(_slide, apply, p=p) if p.mode == "slide" else apply
  views = [(scale, flipped) for scale in p.scales for flipped in ((False, True) if p.flip else (False,))]
  total = None
  for scale, flipped in views:
    scaled = tuple(max(int(round(n * scale)), 1) for n in size)
    x = images if scaled == size else jax.image.resize(images, (images.shape[0], *scaled, 3), "bilinear",
                                                       antialias=False)
    out = one_pass(jnp.flip(x, axis=2) if flipped else x)
    out = _flip(out) if flipped else out
    out = out if scaled == size else _resize(out, size)
    if len(views) == 1:
      return out  # one pass: the model's own logits, bit for bit
    out = {k: jax.nn.softmax(v, axis=-1) if _kind(k) == "probabilities" else v for k, v in out.items()}
    total = out if total is None else jax.tree.map(jnp.add, total, out)  # a running sum: one pass held
  mean = jax.tree.map(lambda t: t / len(views), total)
  return {k: jnp.log(v) if _kind(k) == "probabilities" else v for k, v in mean.items()}  # log-probabilities


def postprocess_outputs(outputs, config, sort=False):
  """The common outputs of a batch's dense outputs, by the config's head (`sort`: see
  postprocess.find_centers)."""
  return heads.get(config).postprocess(outputs, config, sort)


def flatten(result):
  """The common outputs as one flat dict (semantic, panoptic, instance_map, valid, classes, scores),
  as files and serving signatures hold them."""
  result = dict(result)
  return {**result.pop("instances", {}), **result}


def make_inference_fn(model, config, sort=False):
  """infer(variables, images) -> common outputs; pure and jittable. `variables` holds `params` and
  `batch_stats`; images are (N, H, W, 3) in [0, 1]."""
  p = protocol(config)

  def infer(variables, images):
    apply = lambda x: model.apply(variables, x, train=False)
    return postprocess_outputs(dense_outputs(apply, images, p), config, sort)

  return infer
