"""Conv + BatchNorm + ReLU, exact GELU, attention, depthwise convolution, input standardisation and resizing,
shared by backbones and heads."""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# ImageNet statistics: inputs arrive in [0, 1] and are standardised inside the model,
# so a checkpoint carries its own normalisation.
# NumPy, not jnp: a module-level jax array would start the backend at import, before jax.distributed.
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def standardise(images, dtype):
  return ((images - _MEAN) / _STD).astype(dtype)


def gelu(x):
  """Exact GELU, jax.nn.gelu(approximate=False) to the bit, with its 1/2 moved onto the erfc: XLA's
  CPU backend fuses (x / 2) into the convolution that follows and builds the 1/2 as an array of
  x's size first (0.2-0.4 ms an image in EoMT's stem)."""
  return x * (0.5 * jax.lax.erfc(x * np.asarray(-np.sqrt(0.5), x.dtype)))


def attention(q, k, v, mask=None, scale=1.0):
  """jax.nn.dot_product_attention; in float32 with the softmax's division moved after the sum over
  keys: it then divides (T, D) outputs instead of (T, S) weights, which on XLA's CPU backend takes a
  ViT block's attention from 0.55 to 0.42 ms an image. (In bfloat16 that order loses accuracy in the
  gradients, so there it is jax's.) q, k, v (N, T|S, heads, d); `mask` (N, 1, T, S) True where a
  query may attend."""
  if q.dtype != jnp.float32:
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale)
  logits = jnp.einsum("nthd,nshd->nhts", q * jnp.float32(scale) if scale != 1.0 else q, k)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  weights = jnp.exp(logits - jax.lax.stop_gradient(logits.max(-1, keepdims=True)))
  return jnp.einsum("nhts,nshd->nthd", weights, v) / jnp.moveaxis(weights.sum(-1), 1, 2)[..., None]


def conv_padding(padding, kernel, dilation=1):
  """Flax padding for a convolution or pooling window.

  "same" is XLA's SAME: on a stride-2 window over an even size it pads (0, 1) or (2, 3), where
  PyTorch pads both sides alike, so PyTorch weights would see every feature shifted by a pixel.
  "torch" pads dilation * (kernel - 1) // 2 on each side, as torchvision's and timm's layers do.
  """
  if padding == "same":
    return "SAME"
  if padding == "torch":
    p = dilation * (kernel - 1) // 2
    return ((p, p), (p, p))
  raise ValueError(f"Unknown padding '{padding}': choose torch or same.")


def layer_norm(dtype, name):
  """PyTorch's LayerNorm as ConvNeXt uses it: epsilon 1e-6 and the exact two-pass variance (not
  E[x^2] - E[x]^2)."""
  return nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, dtype=dtype, name=name)


class FrozenBatchNorm(nn.Module):
  """BatchNorm with fixed statistics and affine parameters, as detectron2's FrozenBatchNorm2d.

  All four live in `batch_stats`, as detectron2 keeps them as buffers: no step updates them and the
  optimizer never sees them (no weight decay, no share of the gradient norm). Variable names are
  nn.BatchNorm's, so the same weights file loads into either.
  """
  epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    fixed = lambda name, value: self.variable("batch_stats", name,
                                              lambda: jnp.full((c,), value, jnp.float32)).value
    scale, bias, mean, var = fixed("scale", 1.0), fixed("bias", 0.0), fixed("mean", 0.0), fixed("var", 1.0)
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    return x * mul.astype(self.dtype) + (bias - mean * mul).astype(self.dtype)


class ConvBN(nn.Module):
  """Conv -> BatchNorm -> optional ReLU; parameters float32, compute in `dtype`."""
  features: int
  kernel: int = 3
  stride: int = 1
  dilation: int = 1
  relu: bool = True
  padding: str = "same"  # or "torch" (see conv_padding)
  frozen_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                padding=conv_padding(self.padding, self.kernel, self.dilation),
                kernel_dilation=self.dilation, use_bias=False, dtype=self.dtype, name="conv")(x)
    if self.frozen_bn:
      x = FrozenBatchNorm(epsilon=1e-5, dtype=self.dtype, name="bn")(x)
    else:
      # Statistics are reduced in float32 whatever the compute dtype.
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                       param_dtype=jnp.float32, name="bn")(x)
    return nn.relu(x) if self.relu else x


class DepthwiseConv(nn.Module):
  """A stride-1 depthwise convolution, padded to keep the size, without bias, as a sum of shifted,
  scaled copies of the input: XLA's CPU backend runs a grouped convolution 25x slower (3x3 on
  32x32x96: 2.5 ms against 0.1 ms an image on 2 cores). Its kernel is nn.Conv's (k, k, 1, C), with
  nn.Conv's initialiser, so weights and checkpoints load either way."""
  kernel_size: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, (h, w, c) = self.kernel_size, x.shape[1:]
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, c), jnp.float32).astype(self.dtype)
    x = jnp.pad(x.astype(self.dtype), ((0, 0), ((k - 1) // 2, k // 2), ((k - 1) // 2, k // 2), (0, 0)))  # XLA's SAME
    return sum(x[:, i:i + h, j:j + w] * kernel[i, j, 0] for i in range(k) for j in range(k))


def resize(x, height, width):
  """Bilinear resize of an NHWC batch to (height, width): jax.image.resize's (half-pixel centres,
  antialiased when shrinking). Upsampling by whole factors (heads' outputs to the image) blends
  each pixel with its neighbours elementwise, 2-3x faster than jax.image.resize's matrix products
  on XLA's CPU backend and equal to them to float rounding; derivatives are jax.image.resize's."""
  h, w = x.shape[1:3]
  whole = h and w and height >= h and width >= w and height % h == 0 and width % w == 0
  if whole and (height, width) != (h, w) and jnp.issubdtype(x.dtype, jnp.floating):
    return _upsample(x, height // h, width // w)
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), "bilinear")


def _upsample_axis(x, factor, axis):
  """Output r of input pixel i sits at i + (r + 0.5) / factor - 0.5, between i and a neighbour
  (the edge pixel held beyond the border)."""
  n = x.shape[axis]
  at = lambda start, stop: jax.lax.slice_in_dim(x, start, stop, axis=axis)
  before = jnp.concatenate([at(0, 1), at(0, n - 1)], axis)
  after = jnp.concatenate([at(1, n), at(n - 1, n)], axis)
  pos = (np.arange(factor) + 0.5) / factor - 0.5
  shape = [1] * (x.ndim + 1)
  shape[axis + 1] = factor
  weight = lambda v: np.asarray(v, np.float64).reshape(shape).astype(x.dtype)
  grow = lambda v: jnp.expand_dims(v, axis + 1)
  y = (grow(before) * weight(np.maximum(-pos, 0)) + grow(x) * weight(1 - np.abs(pos))
       + grow(after) * weight(np.maximum(pos, 0)))
  return y.reshape(*x.shape[:axis], n * factor, *x.shape[axis + 1:])


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _upsample(x, fh, fw):
  return _upsample_axis(_upsample_axis(x, fh, 1), fw, 2)


@_upsample.defjvp
def _upsample_jvp(fh, fw, primals, tangents):
  """The same linear map by jax.image.resize, whose transpose (the gradient) is 3x faster than
  the blends' own."""
  (x,), (t,) = primals, tangents
  n, h, w, c = x.shape
  return _upsample(x, fh, fw), jax.image.resize(t, (n, h * fh, w * fw, c), "bilinear")
