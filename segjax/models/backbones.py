"""Backbones: images (N, H, W, 3) in [0, 1] -> {"low": stride-4 features, "out": deepest features}."""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from segjax.models.layers import ConvBN, resize

# ImageNet statistics: inputs arrive in [0, 1] and are standardised inside the model,
# so a checkpoint carries its own normalisation.
_MEAN = jnp.array([0.485, 0.456, 0.406])
_STD = jnp.array([0.229, 0.224, 0.225])


def _standardise(images, dtype):
  return ((images - _MEAN) / _STD).astype(dtype)


class SeedNet(nn.Module):
  """The seed's small conv net, 256x256x3 -> 64x64x128 (stride 4).

  A cheap pyramid (strides 4, 8, 16, the last dilated) is projected and summed back at stride 4
  (as in an FPN), so each output pixel sees a whole object: telling a disk from a square needs the
  outline, not the local colour.
  """
  widths: Sequence[int] = (24, 48, 96, 192)
  features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, train):
    w = self.widths
    x = _standardise(images, self.dtype)
    x = ConvBN(w[0], stride=2, dtype=self.dtype)(x, train)
    x = ConvBN(w[1], stride=2, dtype=self.dtype)(x, train)
    s4 = ConvBN(w[1], dtype=self.dtype)(x, train)
    x = ConvBN(w[2], stride=2, dtype=self.dtype)(s4, train)
    s8 = ConvBN(w[2], dtype=self.dtype)(x, train)
    x = ConvBN(w[3], stride=2, dtype=self.dtype)(s8, train)
    x = ConvBN(w[3], dilation=2, dtype=self.dtype)(x, train)
    s16 = ConvBN(w[3], dilation=4, dtype=self.dtype)(x, train)
    h, wd = s4.shape[1:3]
    lateral = [ConvBN(self.features, kernel=1, relu=False, dtype=self.dtype)(f, train) for f in (s4, s8, s16)]
    out = nn.relu(lateral[0] + resize(lateral[1], h, wd) + resize(lateral[2], h, wd))
    return {"low": s4, "out": out}


class BasicBlock(nn.Module):
  features: int
  stride: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    y = ConvBN(self.features, stride=self.stride, dilation=self.dilation, dtype=self.dtype)(x, train)
    y = ConvBN(self.features, dilation=self.dilation, relu=False, dtype=self.dtype)(y, train)
    if x.shape != y.shape:
      x = ConvBN(self.features, kernel=1, stride=self.stride, relu=False, dtype=self.dtype)(x, train)
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  features: int
  stride: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    y = ConvBN(self.features, kernel=1, dtype=self.dtype)(x, train)
    y = ConvBN(self.features, stride=self.stride, dilation=self.dilation, dtype=self.dtype)(y, train)
    y = ConvBN(4 * self.features, kernel=1, relu=False, dtype=self.dtype)(y, train)
    if x.shape != y.shape:
      x = ConvBN(4 * self.features, kernel=1, stride=self.stride, relu=False, dtype=self.dtype)(x, train)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """ResNet v1.5 whose last stages trade stride for dilation to reach `output_stride` (8, 16 or 32)."""
  stage_sizes: Sequence[int]
  block: Any
  output_stride: int = 16
  width: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, train):
    if self.output_stride not in (8, 16, 32):
      raise ValueError(f"ResNet output_stride must be 8, 16 or 32, not {self.output_stride}.")
    x = _standardise(images, self.dtype)
    x = ConvBN(self.width, kernel=7, stride=2, dtype=self.dtype)(x, train)
    x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
    stride, dilation, low = 4, 1, None
    for i, num_blocks in enumerate(self.stage_sizes):
      step = 1 if i == 0 else 2
      if step == 2 and stride == self.output_stride:
        step, dilation = 1, dilation * 2  # keep resolution, widen the view instead
      stride *= step
      for j in range(num_blocks):
        x = self.block(self.width * 2**i, stride=step if j == 0 else 1,
                       dilation=dilation, dtype=self.dtype)(x, train)
      if i == 0:
        low = x
    return {"low": low, "out": x}


def resnet18(**kwargs):
  return ResNet(stage_sizes=(2, 2, 2, 2), block=BasicBlock, **kwargs)


def resnet50(**kwargs):
  return ResNet(stage_sizes=(3, 4, 6, 3), block=Bottleneck, **kwargs)


BACKBONES = {"seed": SeedNet, "resnet18": resnet18, "resnet50": resnet50}
