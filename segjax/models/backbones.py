"""Backbones by name: images (N, H, W, 3) in [0, 1] -> a dict of features.

Every backbone returns `stage1`..`stage4` (strides 4, 8, 16 and 32, for multi-scale decoders; a
dilated ResNet keeps its last stages at its output stride), `fine` (its finest features: stride 2,
or 4 where it has nothing finer), `low` (stride 4) and `out` (what single-scale decoders read).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from segjax.models.convnext import convnext_base, convnext_large, convnext_small, convnext_tiny
from segjax.models.layers import ConvBN, resize, standardise
from segjax.models.resnet import BasicBlock, resnet18, resnet34, resnet50, resnet101, resnet152
from segjax.models.vit import VITS


class PixelNet(nn.Module):
  """A control that sees one pixel at a time (1x1 convs only): it can use colour but never shape."""
  width: int = 64
  depth: int = 3
  features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, train):
    x = standardise(images, self.dtype)
    for _ in range(self.depth):
      x = ConvBN(self.width, kernel=1, dtype=self.dtype)(x, train)
    x = ConvBN(self.features, kernel=1, dtype=self.dtype)(x, train)
    # Its stages are its pixels averaged over 4x4 to 32x32 cells: still no shape, only colour.
    stages = {f"stage{i + 1}": nn.avg_pool(x, (4 * 2**i,) * 2, (4 * 2**i,) * 2, padding="SAME") for i in range(4)}
    return {**stages, "fine": x, "low": x, "out": x}


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
    x = standardise(images, self.dtype)
    fine = ConvBN(w[0], stride=2, dtype=self.dtype)(x, train)
    x = ConvBN(w[1], stride=2, dtype=self.dtype)(fine, train)
    levels = [ConvBN(w[1], dtype=self.dtype)(x, train)]
    for width, depth in zip(w[2:], self.depths):
      x = ConvBN(width, stride=2, dtype=self.dtype)(levels[-1], train)
      for _ in range(depth):
        x = BasicBlock(width, padding="same", dtype=self.dtype)(x, train)
      levels.append(x)
    h, wd = levels[0].shape[1:3]
    out = sum(resize(ConvBN(self.features, kernel=1, relu=False, dtype=self.dtype)(f, train), h, wd)
              for f in levels)
    stages = {f"stage{i + 1}": f for i, f in enumerate(levels)}
    return {**stages, "fine": fine, "low": levels[0], "out": nn.relu(out)}


BACKBONES = {"seed": SeedNet, "pixel": PixelNet,
             "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
             "resnet152": resnet152, "convnext_tiny": convnext_tiny, "convnext_small": convnext_small,
             "convnext_base": convnext_base, "convnext_large": convnext_large, **VITS}
