"""Instance decoders: features -> class-agnostic centre heatmap and per-pixel offsets to the centre."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from segjax.models.layers import ConvBN, resize


class CenterOffsetDecoder(nn.Module):
  """The Panoptic-DeepLab instance decoder: dense, static-shaped, so grouping can run inside jit.

  Returns `center` (N, H, W) and `offsets` (N, H, W, 2) in input pixels, at input resolution.
  """
  hidden: int = 64
  branch: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features, size, train):
    x = ConvBN(self.hidden, kernel=1, dtype=self.dtype)(features["out"], train)
    center = ConvBN(self.branch, dtype=self.dtype)(x, train)
    center = nn.Conv(1, (1, 1), dtype=self.dtype)(center)
    offsets = ConvBN(self.branch, dtype=self.dtype)(x, train)
    # Offsets are predicted in units of the feature stride and scaled to input pixels.
    stride = size[0] / features["out"].shape[1]
    offsets = nn.Conv(2, (1, 1), dtype=self.dtype)(offsets) * stride
    return {"center": resize(center, *size)[..., 0], "offsets": resize(offsets, *size)}


INSTANCE_DECODERS = {"center_offset": CenterOffsetDecoder}
