"""Conv + BatchNorm + ReLU, input standardisation and resizing, shared by backbones and heads."""
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


def resize(x, height, width):
  """Bilinear resize of an NHWC batch to (height, width)."""
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), "bilinear")
