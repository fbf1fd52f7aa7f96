"""Semantic decoders: backbone features -> full-resolution class logits (N, H, W, num_classes)."""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from segjax.models.layers import ConvBN, resize


class SeedDecoder(nn.Module):
  """The seed's decoder: a per-pixel classifier on the stride-4 features, refined at stride 2.

  The refinement (`refine` > 0) sees the stride-2 features, whose edges keep corners sharp that
  stride-4 logits alone would round off; it costs one narrow 3x3 conv.
  """
  num_classes: int
  hidden: int = 64
  refine: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features, size, train):
    x = ConvBN(self.hidden, kernel=1, dtype=self.dtype)(features["out"], train)
    if self.refine:
      fine = features["fine"]
      x = ConvBN(self.refine, kernel=1, dtype=self.dtype)(x, train)
      x = jnp.concatenate([resize(x, *fine.shape[1:3]), fine], axis=-1)
      x = ConvBN(self.refine, dtype=self.dtype)(x, train)
    x = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype)(x)
    return resize(x, *size)


class ASPP(nn.Module):
  """Atrous spatial pyramid pooling: parallel dilated convs plus image-level pooling."""
  rates: Sequence[int] = (6, 12, 18)
  features: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    branches = [ConvBN(self.features, kernel=1, dtype=self.dtype)(x, train)]
    branches += [ConvBN(self.features, dilation=r, dtype=self.dtype)(x, train) for r in self.rates]
    pooled = ConvBN(self.features, kernel=1, dtype=self.dtype)(jnp.mean(x, (1, 2), keepdims=True), train)
    branches.append(jnp.broadcast_to(pooled, branches[0].shape))
    return ConvBN(self.features, kernel=1, dtype=self.dtype)(jnp.concatenate(branches, -1), train)


class DeepLabV3Plus(nn.Module):
  """DeepLabV3+ (ASPP and a stride-4 decoder); `decoder_features=0` gives plain DeepLabV3."""
  num_classes: int
  rates: Sequence[int] = (6, 12, 18)
  aspp_features: int = 256
  decoder_features: int = 256
  low_features: int = 48
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features, size, train):
    x = ASPP(self.rates, self.aspp_features, self.dtype)(features["out"], train)
    if self.decoder_features:
      low = ConvBN(self.low_features, kernel=1, dtype=self.dtype)(features["low"], train)
      x = jnp.concatenate([resize(x, *low.shape[1:3]), low], -1)
      x = ConvBN(self.decoder_features, dtype=self.dtype)(x, train)
      x = ConvBN(self.decoder_features, dtype=self.dtype)(x, train)
    else:
      x = ConvBN(self.aspp_features, dtype=self.dtype)(x, train)
    x = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype)(x)
    return resize(x, *size)


SEMANTIC_DECODERS = {"seed": SeedDecoder, "deeplabv3plus": DeepLabV3Plus}
