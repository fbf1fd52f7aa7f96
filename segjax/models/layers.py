"""Conv + BatchNorm + ReLU and resizing, shared by backbones and heads."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvBN(nn.Module):
  """Conv -> BatchNorm -> optional ReLU; parameters float32, compute in `dtype`."""
  features: int
  kernel: int = 3
  stride: int = 1
  dilation: int = 1
  relu: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                padding="SAME", kernel_dilation=self.dilation, use_bias=False, dtype=self.dtype)(x)
    # Statistics are reduced in float32 whatever the compute dtype.
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                     param_dtype=jnp.float32)(x)
    return nn.relu(x) if self.relu else x


def resize(x, height, width):
  """Bilinear resize of an NHWC batch to (height, width)."""
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), "bilinear")
