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
  """input.eval_size is the dataset's eval image size: a sliding window larger than it (at the
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
  raise UserError(f"{named} is {window}, larger than config.input.eval_size {tuple(size)}{scaled}, the "
                  "dataset's eval image size: give a window within it or config.eval.mode='whole'.")


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


def _each_dense(outputs, kinds, change, scale):
  """Each dense output through `change` (a resize or a mirror; one value per image, "global", as it
  is); a displacement also multiplied by its (y, x) `scale`, as its vectors change with the image."""
  changed = {}
  for k, v in outputs.items():
    kind = kinds.get(k, "dense")
    changed[k] = v if kind == "global" else change(v)
    if kind == "displacement":
      changed[k] = changed[k] * jnp.asarray(scale, v.dtype)
  return changed


def _flip(outputs, kinds):
  """Mirrors dense outputs left-right; a displacement's x changes sign."""
  return _each_dense(outputs, kinds, lambda v: jnp.flip(v, axis=2), (1.0, -1.0))


def _resize(outputs, start, size, kinds):
  """Dense outputs (N, *start, ...) bilinearly resized to `size`."""
  resize = lambda v: jax.image.resize(v, (v.shape[0], *size) + v.shape[3:], "bilinear", antialias=False)
  return _each_dense(outputs, kinds, resize, (size[0] / start[0], size[1] / start[1]))


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
    out = out if scaled == size else _resize(out, scaled, size, kinds)
    if len(views) == 1:
      return out  # one pass: the model's own logits, bit for bit
    out = {k: jax.nn.softmax(v, axis=-1) if kinds.get(k) == "probabilities" else v for k, v in out.items()}
    total = out if total is None else jax.tree.map(jnp.add, total, out)  # a running sum: one pass held
  mean = jax.tree.map(lambda t: t / len(views), total)
  return {k: jnp.log(v) if kinds.get(k) == "probabilities" else v for k, v in mean.items()}  # log-probabilities


# Eval and predict pad images to a multiple of the deepest backbone stride (a ViT drops the pixels
# past its last whole patch).
CANVAS_MULTIPLE = 32


def padded_size(size):
  """(height, width) rounded up to CANVAS_MULTIPLE."""
  return tuple(-(-int(n) // CANVAS_MULTIPLE) * CANVAS_MULTIPLE for n in size)


def base_scaled(size, base_size):
  """(height, width) of an image of `size` resized, keeping its aspect ratio, to the largest size
  whose longer side is at most max(base_size) and shorter side at most min(base_size): mmcv's
  rescale_size, which mmsegmentation's Resize(scale=(2048, 512), keep_ratio=True) uses. `size`
  itself when base_size is None."""
  if not base_size:
    return tuple(int(n) for n in size)
  h, w = size
  factor = min(max(base_size) / max(h, w), min(base_size) / min(h, w))
  return max(int(h * factor + 0.5), 1), max(int(w * factor + 0.5), 1)


def eval_base_size(config):
  """The base size eval and predict resize each image to before inference, or None."""
  base = config.eval.get("base_size") or config.input.get("base_size")
  return tuple(base) if base else None


def _taps(length, size_in, size_out, canvas_in):
  """The two source indices and the weight of the second for each of `length` outputs of a
  bilinear resize from size_in to size_out (traced), as torch's align_corners=False: half-pixel
  centres, clamped at the image's edges. Outputs past size_out (the canvas's padding) go on into
  the input's padding, so that post-processing sees there what the model said on it, as without a
  resize, not the image's last row or column repeated (a stuff segment or a ridge of centres grown
  into the padding)."""
  src = jnp.maximum((jnp.arange(length) + 0.5) * (size_in / size_out) - 0.5, 0.0)
  last = jnp.where(jnp.arange(length) < size_out, size_in - 1, canvas_in - 1)
  low = jnp.minimum(jnp.floor(src).astype(jnp.int32), last)
  return low, jnp.minimum(low + 1, last), src - low


def resize_back(outputs, sizes, canvas, kinds):
  """One image's dense outputs, of which the top-left sizes[:2] are the image, resized bilinearly
  to its size sizes[2:] at the top-left of a `canvas` (height, width) map: mmsegmentation's resize
  of the logits back to the original image (torch's bilinear, align_corners=False). Two gathers
  per axis: the sizes differ per image, and a resize by matrices (jax.image) costs input x output
  pixels per axis, hundreds of GFLOPs for ADE20K's 150 classes at 1600x1600."""
  src, dst = jnp.maximum(sizes[:2], 1), jnp.maximum(sizes[2:], 1)

  def resize(v):
    (y0, y1, ty), (x0, x1, tx) = (_taps(n, src[a], dst[a], v.shape[a]) for a, n in enumerate(canvas))
    down = lambda t: t.reshape((-1,) + (1,) * (v.ndim - 1))  # weights along rows, then columns
    across = lambda t: t.reshape((1, -1) + (1,) * (v.ndim - 2))
    rows = v[y0] * down(1 - ty) + v[y1] * down(ty)
    return (rows[:, x0] * across(1 - tx) + rows[:, x1] * across(tx)).astype(v.dtype)

  return _each_dense(outputs, kinds, resize, dst / src)


def _one_image_at_a_time(fn, tree, n):
  """fn over each of a batch's n images in turn on each device (the memory of one image's outputs
  at its own size, not the batch's): the batch, split over the devices, runs as (devices, images
  per device)."""
  d = jax.device_count()
  d = d if n % d == 0 else 1
  split = jax.tree.map(lambda x: x.reshape((d, n // d) + x.shape[1:]), tree)
  out = jax.vmap(lambda t: jax.lax.map(fn, t))(split)
  return jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), out)


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
  """infer(variables, images, back=None) -> common outputs; pure and jittable. `variables` holds
  `params` and `batch_stats`; images are (N, H, W, 3) in [0, 1].

  `back` = (sizes, canvas), for images resized to a base size: sizes (N, 4) int, each image's height
  and width in `images` and its own; canvas, the (height, width) of the outputs. Each image's dense
  outputs are then resized back to its own size before post-processing (resize_back), so the
  instances and the panoptic map are found at the image's resolution, as the logits are scored
  there; one image at a time on each device."""
  p, kinds = protocol(config), heads.get(config).outputs

  def infer(variables, images, back=None):
    apply = lambda x: model.apply(variables, x, train=False)
    dense = dense_outputs(apply, images, p, kinds)
    if back is None:
      return postprocess_outputs(dense, config, sort)
    sizes, canvas = back

    def one(args):
      restored = resize_back(*args, canvas, kinds)
      return jax.tree.map(lambda x: x[0], postprocess_outputs(jax.tree.map(lambda x: x[None], restored), config, sort))

    return _one_image_at_a_time(one, (dense, sizes), images.shape[0])

  return infer
