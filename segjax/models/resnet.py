"""ResNet v1.5 (torchvision's and timm's): images (N, H, W, 3) in [0, 1] -> features by stage.

Variables are named by stage and block, `stage2/block3/conv1/{conv,bn}`, `stage2/block1/downsample`,
`stem`: segjax.convert maps torchvision's `layer2.2.conv1` and `bn1` onto them, and forks can rely
on them. With `padding="torch"` (the default) converted torchvision or timm weights compute here
what they computed in PyTorch.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from segjax.models.layers import ConvBN, conv_padding, standardise


class _Block(nn.Module):
  """What both kinds of block are given."""
  features: int
  stride: int = 1
  dilation: int = 1
  padding: str = "torch"
  frozen_bn: bool = False
  dtype: Any = jnp.float32


class BasicBlock(_Block):
  """Two 3x3 convs (ResNet-18 and -34)."""

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(ConvBN, padding=self.padding, frozen_bn=self.frozen_bn, dtype=self.dtype)
    y = conv(self.features, stride=self.stride, dilation=self.dilation, name="conv1")(x, train)
    y = conv(self.features, dilation=self.dilation, relu=False, name="conv2")(y, train)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = conv(self.features, kernel=1, stride=self.stride, relu=False, name="downsample")(x, train)
    return nn.relu(x + y)


class Bottleneck(_Block):
  """1x1, 3x3 (strided and dilated here, as v1.5 does), 1x1 to 4x the width."""

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(ConvBN, padding=self.padding, frozen_bn=self.frozen_bn, dtype=self.dtype)
    y = conv(self.features, kernel=1, name="conv1")(x, train)
    y = conv(self.features, stride=self.stride, dilation=self.dilation, name="conv2")(y, train)
    y = conv(4 * self.features, kernel=1, relu=False, name="conv3")(y, train)
    if self.stride != 1 or x.shape[-1] != 4 * self.features:
      x = conv(4 * self.features, kernel=1, stride=self.stride, relu=False, name="downsample")(x, train)
    return nn.relu(x + y)


class ResNetStage(nn.Module):
  """`num_blocks` blocks; the first may stride or, past the output stride, dilate instead."""
  block: Any
  num_blocks: int
  features: int
  stride: int
  first_dilation: int  # torchvision keeps the previous stage's dilation in the first block
  dilation: int
  padding: str = "torch"
  frozen_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    for j in range(self.num_blocks):
      x = self.block(self.features, stride=self.stride if j == 0 else 1,
                     dilation=self.first_dilation if j == 0 else self.dilation,
                     padding=self.padding, frozen_bn=self.frozen_bn, dtype=self.dtype,
                     name=f"block{j + 1}")(x, train)
    return x


class ResNet(nn.Module):
  """ResNet whose last stages trade stride for dilation to reach `output_stride` (8, 16 or 32),
  as torchvision's `replace_stride_with_dilation` does.

  Returns `stem` (stride 2), `stage1`..`stage4` (strides 4, 8, 16, 32 before dilation) and the
  aliases every head reads: `fine` (the stem), `low` (stage1) and `out` (stage4).
  """
  stage_sizes: Sequence[int]
  block: Any
  output_stride: int = 16
  width: int = 64
  padding: str = "torch"  # "same" for XLA's SAME padding (see layers.conv_padding)
  frozen_bn: bool = False  # BatchNorm kept as loaded (detectron2's FrozenBN)
  dtype: Any = jnp.float32

  def __post_init__(self):  # at construction, where build_segmenter turns it into a sentence
    if self.output_stride not in (8, 16, 32):
      raise ValueError(f"ResNet output_stride must be 8, 16 or 32, not {self.output_stride}.")
    conv_padding(self.padding, 1)
    super().__post_init__()

  @nn.compact
  def __call__(self, images, train):
    kwargs = dict(padding=self.padding, frozen_bn=self.frozen_bn, dtype=self.dtype)
    x = standardise(images, self.dtype)
    stem = ConvBN(self.width, kernel=7, stride=2, name="stem", **kwargs)(x, train)
    x = nn.max_pool(stem, (3, 3), (2, 2), padding=conv_padding(self.padding, 3))
    out, stride, dilation = {"stem": stem, "fine": stem}, 4, 1
    for i, num_blocks in enumerate(self.stage_sizes):
      step, previous = (1 if i == 0 else 2), dilation
      if step == 2 and stride == self.output_stride:
        step, dilation = 1, dilation * 2  # keep resolution, widen the view instead
      stride *= step
      x = ResNetStage(self.block, num_blocks, self.width * 2**i, step, previous, dilation,
                      name=f"stage{i + 1}", **kwargs)(x, train)
      out[f"stage{i + 1}"] = x
    return {**out, "low": out["stage1"], "out": x}


def _resnet(stage_sizes, block):
  return functools.partial(ResNet, stage_sizes=stage_sizes, block=block)


resnet18 = _resnet((2, 2, 2, 2), BasicBlock)
resnet34 = _resnet((3, 4, 6, 3), BasicBlock)
resnet50 = _resnet((3, 4, 6, 3), Bottleneck)
resnet101 = _resnet((3, 4, 23, 3), Bottleneck)
resnet152 = _resnet((3, 8, 36, 3), Bottleneck)
