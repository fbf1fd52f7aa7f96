"""The one inference function: variables and images in, the common outputs out (the semantic map,
and from a head that predicts instances the instances and panoptic map), under the evaluation
protocol the config names, all inside jit with static shapes; the config's head (segjax.heads)
post-processes. Eval, predict, the benchmark and export call it.

Protocols (`config.eval`): the whole image at once, or sliding windows whose logits are averaged
where they overlap; either at several scales and optionally mirrored, the dense outputs resized
back to the image's size (bilinear without antialiasing, as mmsegmentation resizes) and averaged
as the config's head declares (Head.outputs): class probabilities as mmsegmentation's test-time augmentation
averages them, maps as they are. Displacements (Panoptic-DeepLab's offsets) are not values: a
mirrored pass's x offsets change sign, and a pass at scale s predicts offsets s times too long.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from segjax import checks, heads
from segjax.errors import UserError


class Protocol(NamedTuple):
  mode: str  # whole | slide
  window: tuple  # (height, width) of a sliding window
  stride: tuple  # (height, width) between windows
  margin: tuple  # pixels of a window's inner borders left out of the average
  scales: tuple
  flip: bool


def protocol(config, resolved=True):
  """The `config.eval` protocol, checked (validation runs this before any work): a sliding window
  defaults to the training crop and a stride of two thirds of it (mmsegmentation's 769/513 on
  Cityscapes). `resolved=False` (validate, before the dataset fills an unset input.crop_size): a
  window that defaults to the crop size is not known yet, and is None."""
  e = config.eval
  if e.mode not in ("whole", "slide"):
    raise UserError(f"config.eval.mode is '{e.mode}': choose whole or slide.")
  if not (isinstance(e.scales, (tuple, list)) and e.scales and all(checks.is_number(s) and s > 0 for s in e.scales)):
    raise UserError(f"config.eval.scales is {checks.shown(e.scales)}: give one or more factors > 0, e.g. (0.75, 1.0, 1.25).")
  if not (checks.is_int(e.margin) and e.margin >= 0):
    raise UserError(f"config.eval.margin is {e.margin!r}: give an integer >= 0 (0: mmsegmentation's plain mean).")
  for key in ("window", "stride"):
    if e[key] is not None and not checks.is_pair(e[key]):
      raise UserError(f"config.eval.{key} is {checks.shown(e[key])}: give (height, width), each >= 1.")
  scales = tuple(float(s) for s in e.scales)
  if not (e.window or config.input.crop_size or resolved):
    return Protocol(e.mode, None, None, (e.margin, e.margin), scales, bool(e.flip))
  window = tuple(e.window or config.input.crop_size or ())
  stride = tuple(e.stride or (max(-(-2 * n // 3), 1) for n in window))
  margin = (e.margin, e.margin)
  if e.mode == "slide":
    for key, value in (("window", window), ("stride", stride)):
      if len(value) != 2 or min(value) < 1:
        raise UserError(f"config.eval.{key} is {value}: give (height, width), each >= 1.")
    for axis in range(2):
      overlap = window[axis] - stride[axis]
      if overlap < 0:
        raise UserError(f"config.eval.stride {stride} is larger than config.eval.window {window}: "
                        "pixels between windows would have no prediction; use a stride <= the window.")
      if not 0 <= margin[axis] <= overlap // 2:
        raise UserError(f"config.eval.margin is {e.margin}: it must be between 0 and half the overlap "
                        f"(window - stride) // 2 = {overlap // 2} on each axis, or some pixels would be "
                        "in no window's average.")
  return Protocol(e.mode, window, stride, margin, scales, bool(e.flip))


def check_window_fits(config, window):
  """Eval pads every image to input.eval_size: a sliding window larger than that canvas (at the
  largest scale) never slides there, it only pads the image up to itself."""
  size = config.input.eval_size
  if config.eval.mode != "slide" or window is None or size is None:
    return
  top = max(config.eval.scales)
  canvas = tuple(max(int(round(n * top)), 1) for n in size)
  if all(w <= c for w, c in zip(window, canvas)):
    return
  named = ("config.eval.window" if config.eval.window else
           "config.eval.window is unset, so the window is config.input.crop_size, which")
  scaled = f" scaled by {top} to {canvas}" if canvas != tuple(size) else ""
  raise UserError(f"{named} is {window}, larger than config.input.eval_size {tuple(size)}{scaled}, the canvas "
                  "every eval image is padded to: give a window within it or config.eval.mode='whole'.")


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


def _slide(apply, images, p, kinds):
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
  whole = [k for k in outs if kinds.get(k) == "global"]
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


def _flip(outputs, kinds):
  """Mirrors dense outputs left-right; a displacement's x changes sign."""
  flipped = {}
  for k, v in outputs.items():
    kind = kinds.get(k, "dense")
    flipped[k] = v if kind == "global" else jnp.flip(v, axis=2)
    if kind == "displacement":
      flipped[k] = flipped[k] * jnp.array([1.0, -1.0], v.dtype)
  return flipped


def _resize(outputs, size, kinds):
  """Dense outputs bilinearly resized to `size`; displacements also scaled by the resize factor."""
  resized = {}
  for k, v in outputs.items():
    kind = kinds.get(k, "dense")
    if kind == "global":
      resized[k] = v
      continue
    n, h, w = v.shape[:3]
    resized[k] = jax.image.resize(v, (n, *size) + v.shape[3:], "bilinear", antialias=False)
    if kind == "displacement":
      resized[k] = resized[k] * jnp.array([size[0] / h, size[1] / w], v.dtype)
  return resized


def dense_outputs(apply, images, p, kinds):
  """The model's dense outputs for `images` (N, H, W, 3) at (H, W), averaged over the protocol's
  scales and flips (class probabilities then as log mean probabilities); `apply` maps images to a
  dict of dense outputs at their size, `kinds` says how each averages (its head's Head.outputs; a
  map unless it says otherwise)."""
  size = images.shape[1:3]
  one_pass = functools.partial(_slide, apply, p=p, kinds=kinds) if p.mode == "slide" else apply
  views = [(scale, flipped) for scale in p.scales for flipped in ((False, True) if p.flip else (False,))]
  total = None
  for scale, flipped in views:
    scaled = tuple(max(int(round(n * scale)), 1) for n in size)
    x = images if scaled == size else jax.image.resize(images, (images.shape[0], *scaled, 3), "bilinear",
                                                       antialias=False)
    out = one_pass(jnp.flip(x, axis=2) if flipped else x)
    out = _flip(out, kinds) if flipped else out
    out = out if scaled == size else _resize(out, size, kinds)
    if len(views) == 1:
      return out  # one pass: the model's own logits, bit for bit
    out = {k: jax.nn.softmax(v, axis=-1) if kinds.get(k) == "probabilities" else v for k, v in out.items()}
    total = out if total is None else jax.tree.map(jnp.add, total, out)  # a running sum: one pass held
  mean = jax.tree.map(lambda t: t / len(views), total)
  return {k: jnp.log(v) if kinds.get(k) == "probabilities" else v for k, v in mean.items()}  # log-probabilities


def postprocess_outputs(outputs, config, sort=False):
  """The common outputs of a batch's dense outputs, by the config's head (`sort`: as
  Head.postprocess takes it)."""
  return heads.get(config).postprocess(outputs, config, sort)


def flatten(result):
  """The common outputs as one flat dict (semantic, panoptic, instance_map, valid, classes, scores),
  as files and serving signatures hold them."""
  result = dict(result)
  return {**result.pop("instances", {}), **result}


def make_inference_fn(model, config, sort=False):
  """infer(variables, images) -> common outputs; pure and jittable. `variables` holds `params` and
  `batch_stats`; images are (N, H, W, 3) in [0, 1]."""
  p, kinds = protocol(config), heads.get(config).outputs

  def infer(variables, images):
    apply = lambda x: model.apply(variables, x, train=False)
    return postprocess_outputs(dense_outputs(apply, images, p, kinds), config, sort)

  return infer
