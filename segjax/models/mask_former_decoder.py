"""Mask classification (Mask2Former, Cheng et al. 2022) from standard ops: an FPN pixel decoder in
place of multi-scale deformable attention, and a transformer decoder whose queries each predict a
class (or "no object") and a mask, every layer's cross-attention masked by the previous layer's mask.

Outputs, for the loss (train=True): `class_logits` (N, L + 1, Q, C + 1) and `mask_logits`
(N, L + 1, H/4, W/4, Q), the predictions of the learned queries and of each of the L layers (the
auxiliary losses read all), and with `aux_semantic` per-pixel class logits `aux_semantic_logits`
(N, H/4, W/4, C) of the pixel decoder; for inference: the last layer's, `class_logits` (N, Q, C + 1)
and `mask_logits` (N, H, W, Q) at input resolution.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from segjax.models.layers import ConvBN, attention, resize


def sine_positions(height, width, dim):
  """DETR's normalised 2-D sine encoding, (height * width, dim): y in the first half, x in the second."""
  def encode(n):
    pos = (np.arange(n, dtype=np.float32) + 1) / (n + 1e-6) * 2 * np.pi
    freq = 10000 ** (2 * (np.arange(dim // 2) // 2) / (dim // 2))
    angles = pos[:, None] / freq
    return np.where(np.arange(dim // 2) % 2 == 0, np.sin(angles), np.cos(angles)).astype(np.float32)
  y, x = encode(height), encode(width)
  return np.concatenate([np.repeat(y, width, axis=0), np.tile(x, (height, 1))], axis=-1)


def attention_mask(mask_logits, shape):
  """Where each query may attend at a level of `shape` (N, Q, h * w): where its mask (N, H, W, Q) is
  on, or everywhere if it is on nowhere. The mask is sampled at the level's pixels, as Mask2Former's
  interpolate does: an antialiased resize would average a small object away at stride 32."""
  n, q = mask_logits.shape[0], mask_logits.shape[-1]
  coarse = jax.image.resize(mask_logits.astype(jnp.float32), (n, *shape, q), "bilinear", antialias=False)
  attend = (coarse >= 0.0).reshape(n, -1, q).transpose(0, 2, 1)  # a comparison: no gradient to stop
  return attend | ~attend.any(-1, keepdims=True)


class PixelDecoder(nn.Module):
  """FPN over `stage1`..`stage4`: returns the mask features (stride 4, `mask_dim` channels) and the
  three coarsest FPN levels, coarse to fine, that the transformer decoder attends to in turn.

  `positions` adds a learned function (two layers) of the sine position encoding to the mask
  features, so that a query's mask can say where as well as what: Mask2Former's deformable-attention
  encoder puts position into its pixel features, a plain FPN has none beyond its borders (SOLO's
  CoordConv adds coordinates for the same reason). The encoding spans the image, as the decoder's
  memory positions do.
  """
  hidden: int
  mask_dim: int
  positions: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features, train):
    stages = [features[f"stage{i}"] for i in (4, 3, 2, 1)]  # coarse to fine
    x = ConvBN(self.hidden, kernel=1, dtype=self.dtype, name="lateral4")(stages[0], train)
    levels = [ConvBN(self.hidden, dtype=self.dtype, name="output4")(x, train)]
    for i, stage in zip((3, 2, 1), stages[1:]):
      lateral = ConvBN(self.hidden, kernel=1, relu=False, dtype=self.dtype, name=f"lateral{i}")(stage, train)
      x = lateral + resize(x, *lateral.shape[1:3]).astype(lateral.dtype)
      x = ConvBN(self.hidden, dtype=self.dtype, name=f"output{i}")(x, train)
      levels.append(x)
    mask_features = nn.Conv(self.mask_dim, (1, 1), dtype=self.dtype, name="mask_features")(levels[-1])
    if self.positions:
      h, w = mask_features.shape[1:3]
      where = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="positions_fc1")(
          jnp.asarray(sine_positions(h, w, self.hidden), self.dtype)))
      where = nn.Dense(self.mask_dim, dtype=self.dtype, name="positions_fc2")(where)
      mask_features = mask_features + where.reshape(h, w, self.mask_dim)
    return mask_features, levels[:3]


class Attention(nn.Module):
  """Multi-head attention, queries to keys and values given apart (positions are added to queries
  and keys only); `mask` (N, 1, Q, K) is True where a query may attend."""
  hidden: int
  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, q, k, v, mask=None):
    project = lambda x, name: nn.DenseGeneral((self.heads, self.hidden // self.heads), dtype=self.dtype,
                                              name=name)(x)
    out = attention(project(q, "query"), project(k, "key"), project(v, "value"), mask,
                    scale=(self.hidden // self.heads)**-0.5)
    return nn.DenseGeneral(self.hidden, axis=(-2, -1), dtype=self.dtype, name="out")(out)


class DecoderLayer(nn.Module):
  """Masked cross-attention to one level, self-attention among the queries, a feed-forward
  network; each with a residual and LayerNorm after it (Mask2Former's order)."""
  hidden: int
  heads: int
  ffn: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, queries, query_pos, memory, memory_pos, attend):
    attention = lambda name: Attention(self.hidden, self.heads, self.dtype, name=name)
    norm = lambda name: nn.LayerNorm(dtype=self.dtype, name=name)
    x = attention("cross")(queries + query_pos, memory + memory_pos, memory, attend[:, None])
    queries = norm("norm_cross")(queries + x)
    x = attention("self")(queries + query_pos, queries + query_pos, queries)
    queries = norm("norm_self")(queries + x)
    x = nn.Dense(self.hidden, dtype=self.dtype, name="fc2")(
        nn.relu(nn.Dense(self.ffn, dtype=self.dtype, name="fc1")(queries)))
    return norm("norm_ffn")(queries + x)


class Predictor(nn.Module):
  """Shared by every layer: a query's class logits and mask embedding, the mask as its dot product
  with the mask features."""
  num_classes: int
  hidden: int
  mask_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, queries, mask_features):
    q = nn.LayerNorm(dtype=self.dtype, name="norm")(queries)
    class_logits = nn.Dense(self.num_classes + 1, dtype=self.dtype, name="classes")(q)
    e = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="mask_fc1")(q))
    e = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="mask_fc2")(e))
    e = nn.Dense(self.mask_dim, dtype=self.dtype, name="mask_fc3")(e)
    return class_logits, jnp.einsum("nqc,nhwc->nhwq", e, mask_features.astype(e.dtype))


class MaskFormerDecoder(nn.Module):
  """`num_queries` learned queries through `layers` decoder layers, which attend to the pixel
  decoder's three coarsest levels in turn (9 layers: three rounds, as Mask2Former)."""
  num_classes: int
  num_queries: int = 100
  hidden: int = 256
  mask_dim: int = 256
  layers: int = 9
  heads: int = 8
  ffn: int = 2048
  # MaX-DeepLab's auxiliary semantic classifier on the pixel decoder (training only): dense class
  # supervision for a backbone that starts from scratch, where Mask2Former's starts from ImageNet.
  # A linear classifier of the mask features, which the queries' masks read linearly too (a 3x3
  # ConvBN before it cost an eighth of a CPU step).
  aux_semantic: bool = False
  # Position in the mask features (PixelDecoder.positions): off in Mask2Former's recipes.
  mask_positions: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features, size, train):
    mask_features, levels = PixelDecoder(self.hidden, self.mask_dim, positions=self.mask_positions,
                                         dtype=self.dtype, name="pixel_decoder")(features, train)
    aux = {}
    if self.aux_semantic and (train or self.is_initializing()):
      aux["aux_semantic_logits"] = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="aux_classes")(
          mask_features)
    n = mask_features.shape[0]
    level_embed = self.param("level_embed", nn.initializers.normal(1.0), (len(levels), self.hidden))
    memories = [(x.reshape(n, -1, self.hidden) + level_embed[i].astype(x.dtype),
                 jnp.asarray(sine_positions(*x.shape[1:3], self.hidden), self.dtype), x.shape[1:3])
                for i, x in enumerate(levels)]
    init = nn.initializers.normal(1.0)
    queries = jnp.broadcast_to(self.param("query_feat", init, (self.num_queries, self.hidden)).astype(self.dtype),
                               (n, self.num_queries, self.hidden))
    query_pos = self.param("query_pos", init, (self.num_queries, self.hidden)).astype(self.dtype)
    predict = Predictor(self.num_classes, self.hidden, self.mask_dim, self.dtype, name="predictor")
    classes, masks = [], []
    for i in range(self.layers + 1):
      class_logits, mask_logits = predict(queries, mask_features)
      classes.append(class_logits)
      masks.append(mask_logits)
      if i == self.layers:
        break
      memory, memory_pos, shape = memories[i % len(memories)]
      queries = DecoderLayer(self.hidden, self.heads, self.ffn, self.dtype, name=f"layer{i + 1}")(
          queries, query_pos, memory, memory_pos, attention_mask(mask_logits, shape))
    if train:
      return {"class_logits": jnp.stack(classes, 1), "mask_logits": jnp.stack(masks, 1), **aux}
    return {"class_logits": classes[-1], "mask_logits": resize(masks[-1], *size)}


MASK_DECODERS = {"mask_former": MaskFormerDecoder}
