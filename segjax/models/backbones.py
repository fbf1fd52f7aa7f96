"""Backbones: images (N, H, W, 3) in [0, 1] -> {"fine": stride 2, "low": stride 4, "out": deepest}."""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from segjax.models.layers import ConvBN, resize

# ImageNet statistics: inputs arrive in [0, 1] and are standardised inside the model,
# so a checkpoint carries its own normalisation.
# NumPy, not jnp: a module-level jax array would start the backend at import, before jax.distributed.
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _standardise(images, dtype):
  return ((images - _MEAN) / _STD).astype(dtype)


class PixelNet(nn.Module):
  """A control that sees one pixel at a time (1x1 convs only): it can use colour but never shape."""
  width: int = 64
  depth: int = 3
  features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, train):
    x = _standardise(images, self.dtype)
    for _ in range(self.depth):
      x = ConvBN(self.width, kernel=1, dtype=self.dtype)(x, train)
    x = ConvBN(self.features, kernel=1, dtype=self.dtype)(x, train)
    return {"fine": x, "low": x, "out": x}


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


class SeedNet(nn.Module):
  """The seed's small conv net, 256x256x3 -> 64x64x128 (stride 4).

  Residual stages at strides 8, 16 and 32 are projected and summed back at stride 4 (as in an FPN),
  so each output pixel sees a whole object: telling a disk from a square needs the outline, which
  takes depth and a wide view, not the local colour.
  """
  widths: Sequence[int] = (24, 48, 64, 128, 256)
  depths: Sequence[int] = (2, 2, 2)  # residual blocks at strides 8, 16, 32
  features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, train):
    w = self.widths
    x = _standardise(images, self.dtype)
    fine = ConvBN(w[0], stride=2, dtype=self.dtype)(x, train)
    x = ConvBN(w[1], stride=2, dtype=self.dtype)(fine, train)
    levels = [ConvBN(w[1], dtype=self.dtype)(x, train)]
    for width, depth in zip(w[2:], self.depths):
      x = ConvBN(width, stride=2, dtype=self.dtype)(levels[-1], train)
      for _ in range(depth):
        x = BasicBlock(width, dtype=self.dtype)(x, train)
      levels.append(x)
    h, wd = levels[0].shape[1:3]
    out = sum(resize(ConvBN(self.features, kernel=1, relu=False, dtype=self.dtype)(f, train), h, wd)
              for f in levels)
    return {"fine": fine, "low": levels[0], "out": nn.relu(out)}


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
    fine = x = ConvBN(self.width, kernel=7, stride=2, dtype=self.dtype)(x, train)
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
    return {"fine": fine, "low": low, "out": x}


def resnet18(**kwargs):
  return ResNet(stage_sizes=(2, 2, 2, 2), block=BasicBlock, **kwargs)


def resnet50(**kwargs):
  return ResNet(stage_sizes=(3, 4, 6, 3), block=Bottleneck, **kwargs)


BACKBONES = {"seed": SeedNet, "pixel": PixelNet, "resnet18": resnet18, "resnet50": resnet50}
