"""ConvNeXt (Liu et al. 2022, as timm and torchvision build it): images (N, H, W, 3) in [0, 1] ->
features at strides 4, 8, 16 and 32.

Variables: `stem/{conv,norm}`, `stage2/downsample/{norm,conv}`, `stage2/block3/{dwconv,norm,fc1,fc2}`
and the block's layer scale `gamma`. Patchify and downsampling convs take no padding and the 7x7
depthwise conv pads 3 on each side, as in PyTorch, so converted weights compute what they did there.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models.layers import gelu, layer_norm, standardise

_INIT = nn.initializers.truncated_normal(0.02)


class Block(nn.Module):
  """7x7 depthwise conv, LayerNorm, 4x MLP with exact GELU, layer scale, stochastic depth."""
  dim: int
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    y = nn.Conv(self.dim, (7, 7), padding=((3, 3), (3, 3)), feature_group_count=self.dim,
                kernel_init=_INIT, dtype=self.dtype, name="dwconv")(x)
    y = layer_norm(self.dtype, "norm")(y)
    y = nn.Dense(4 * self.dim, kernel_init=_INIT, dtype=self.dtype, name="fc1")(y)
    y = gelu(y)  # exact, PyTorch's nn.GELU (Flax's nn.gelu defaults to the tanh approximation)
    y = nn.Dense(self.dim, kernel_init=_INIT, dtype=self.dtype, name="fc2")(y)
    gamma = self.param("gamma", nn.initializers.constant(1e-6), (self.dim,), jnp.float32)
    y = y * gamma.astype(y.dtype)
    if train and self.drop_path > 0:  # drop the whole residual branch of some images
      keep = jax.random.bernoulli(self.make_rng("dropout"), 1 - self.drop_path, (y.shape[0], 1, 1, 1))
      y = jnp.where(keep, y / (1 - self.drop_path), 0).astype(y.dtype)
    return x + y


class Stage(nn.Module):
  """LayerNorm and a 2x2 stride-2 conv (not before the first stage), then the blocks."""
  dim: int
  depth: int
  downsample: bool
  drop_path: Sequence[float]  # per block
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    if self.downsample:
      x = _Downsample(self.dim, self.dtype, name="downsample")(x)
    for j in range(self.depth):
      x = Block(self.dim, self.drop_path[j], self.dtype, name=f"block{j + 1}")(x, train)
    return x


class _Downsample(nn.Module):
  dim: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    x = layer_norm(self.dtype, "norm")(x)
    return nn.Conv(self.dim, (2, 2), (2, 2), padding="VALID", kernel_init=_INIT, dtype=self.dtype,
                   name="conv")(x)


class _Stem(nn.Module):
  dim: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.dim, (4, 4), (4, 4), padding="VALID", kernel_init=_INIT, dtype=self.dtype,
                name="conv")(x)
    return layer_norm(self.dtype, "norm")(x)


class ConvNeXt(nn.Module):
  """Returns `stage1`..`stage4` (strides 4 to 32) and the aliases every head reads: `fine` and
  `low` (stage1, ConvNeXt has nothing finer) and `out` (stage4).

  `drop_path_rate` rises linearly from 0 at the first block to this at the last (timm's rule); it
  acts only in training, with the "dropout" RNG.
  """
  depths: Sequence[int]
  dims: Sequence[int]
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, train):
    x = _Stem(self.dims[0], self.dtype, name="stem")(standardise(images, self.dtype))
    total, done, out = sum(self.depths), 0, {}
    for i, (depth, dim) in enumerate(zip(self.depths, self.dims)):
      rates = tuple(self.drop_path_rate * (done + j) / max(total - 1, 1) for j in range(depth))
      x = Stage(dim, depth, i > 0, rates, self.dtype, name=f"stage{i + 1}")(x, train)
      out[f"stage{i + 1}"], done = x, done + depth
    return {**out, "fine": out["stage1"], "low": out["stage1"], "out": x}


def _convnext(depths, dims):
  return functools.partial(ConvNeXt, depths=depths, dims=dims)


convnext_tiny = _convnext((3, 3, 9, 3), (96, 192, 384, 768))
convnext_small = _convnext((3, 3, 27, 3), (96, 192, 384, 768))
convnext_base = _convnext((3, 3, 27, 3), (128, 256, 512, 1024))
convnext_large = _convnext((3, 3, 27, 3), (192, 384, 768, 1536))
