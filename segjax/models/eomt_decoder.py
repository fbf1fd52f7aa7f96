"""EoMT, the encoder-only mask transformer (Kerssies et al., "Your ViT is Secretly an Image
Segmentation Model", CVPR 2025): learned queries join the ViT's tokens before its last `blocks`
blocks, and the ViT's own self-attention does what Mask2Former's decoder did.

It runs inside the backbone (`inside_backbone`): the Segmenter hands it the ViT (segjax/models/vit.py)
and the images, and it calls the ViT's `embed`, `blocks` and `norm_tokens` itself.

Each query's class comes from a linear layer and its mask from a 3-layer MLP embedding dotted with
the patch tokens upscaled to stride patch / 2^upscale (transposed-conv blocks). In training, each of
the last blocks lets a query attend only to the patches of its previous prediction's mask, each
query unmasked with probability 1 - `mask_probs[j]` (mask annealing takes them from 1 to 0 over
training, segjax/heads/eomt.py); inference runs without masks.

Outputs as the mask_former head reads them: for the loss (train=True) `class_logits`
(N, L + 1, Q, C + 1) and `mask_logits` (N, L + 1, h, w, Q), the prediction before each masked block
and the final one; for inference the final ones, masks at input resolution.
"""
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models.layers import DepthwiseConv, gelu, resize


class Upscale(nn.Module):
  """2x: a 2x2 stride-2 transposed conv (as one matmul: its windows do not overlap), GELU, a 3x3
  depthwise conv and a LayerNorm over channels."""
  dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    n, h, w, _ = x.shape
    y = nn.DenseGeneral((2, 2, self.dim), use_bias=False, dtype=self.dtype, name="deconv")(x)  # (n, h, w, 2, 2, d)
    y = y + self.param("deconv_bias", nn.initializers.zeros, (self.dim,)).astype(y.dtype)
    y = y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, self.dim)
    y = gelu(y)
    y = DepthwiseConv(3, self.dtype, name="dwconv")(y)
    return nn.LayerNorm(1e-6, use_fast_variance=False, dtype=self.dtype, name="norm")(y)


class Predictor(nn.Module):
  """Class logits (N, Q, C + 1), mask logits (N, h', w', Q) and the upscaled pixel features they
  are made of (N, h', w', D), of normed tokens [queries, prefix, patches]."""
  num_classes: int
  num_queries: int
  upscale: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, grid):
    n, _, d = x.shape
    queries = x[:, :self.num_queries]
    class_logits = nn.Dense(self.num_classes + 1, dtype=self.dtype, name="classes")(queries)
    e = gelu(nn.Dense(d, dtype=self.dtype, name="mask_fc1")(queries))
    e = gelu(nn.Dense(d, dtype=self.dtype, name="mask_fc2")(e))
    e = nn.Dense(d, dtype=self.dtype, name="mask_fc3")(e)
    pixels = x[:, -grid[0] * grid[1]:].reshape(n, *grid, d)
    for i in range(self.upscale):
      pixels = Upscale(d, self.dtype, name=f"upscale{i + 1}")(pixels)
    return class_logits, jnp.einsum("nqc,nhwc->nhwq", e, pixels), pixels


def query_mask(mask_logits, grid, num_queries, prefix, keep):
  """(N, 1, T, T): True where a token may attend. Query q attends to the patches where its mask,
  sampled at the patch grid (bilinear, as EoMT's interpolate), is above 0; to all of them where
  `keep` (N, Q) is False; always to the queries and prefix tokens. Patches attend to everything."""
  n, q = mask_logits.shape[0], mask_logits.shape[-1]
  coarse = jax.image.resize(mask_logits.astype(jnp.float32), (n, *grid, q), "bilinear", antialias=False)
  on = (coarse > 0).reshape(n, -1, q).transpose(0, 2, 1) | ~keep[..., None]  # (N, Q, h * w)
  patches = on.shape[-1]
  total = num_queries + prefix + patches
  rows = jnp.concatenate([jnp.ones((n, q, num_queries + prefix), bool), on], -1)
  mask = jnp.concatenate([rows, jnp.ones((n, total - q, total), bool)], 1)
  return mask[:, None]


class EoMTDecoder(nn.Module):
  """`num_queries` queries through the ViT's last `blocks` blocks. `upscale`: transposed-conv blocks
  (2 takes patch 16 to stride 4)."""
  inside_backbone: ClassVar[bool] = True
  num_classes: int
  num_queries: int = 200
  blocks: int = 4
  upscale: int = 2
  # MaX-DeepLab's auxiliary per-pixel classifier on the last upscaled features (training only), as
  # segjax/models/mask_former_decoder.py's: dense class supervision for a ViT from scratch (not EoMT's).
  aux_semantic: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vit, images, train, mask_probs: Optional[jax.Array] = None):
    depth, grid = vit.depth, vit.grid_of(images)
    if not 0 < self.blocks <= depth:
      raise ValueError(f"EoMT's blocks is {self.blocks}, but the ViT has {depth} blocks.")
    x = vit.blocks(vit.embed(images), images, 0, depth - self.blocks, train)
    n = x.shape[0]
    queries = self.param("queries", nn.initializers.normal(1.0), (self.num_queries, x.shape[-1]))
    x = jnp.concatenate([jnp.broadcast_to(queries.astype(x.dtype), (n, *queries.shape)), x], axis=1)
    predict = Predictor(self.num_classes, self.num_queries, self.upscale, self.dtype, name="predictor")
    masked = train or self.is_initializing()
    classes, masks = [], []
    for j in range(self.blocks):
      mask = None
      if masked:
        class_logits, mask_logits, _ = predict(vit.norm_tokens(x), grid)
        classes.append(class_logits)
        masks.append(mask_logits)
        probs = jnp.ones(self.blocks) if mask_probs is None else mask_probs
        keep = jnp.ones((n, self.num_queries), bool)
        if train:  # each query keeps its mask with its block's probability
          keep = jax.random.uniform(self.make_rng("dropout"), (n, self.num_queries)) < probs[j]
        mask = query_mask(mask_logits, grid, self.num_queries, vit.prefix, keep)
      i = depth - self.blocks + j
      x = vit.blocks(x, images, i, i + 1, train, mask)
    class_logits, mask_logits, pixels = predict(vit.norm_tokens(x), grid)
    aux = {}
    if self.aux_semantic and masked:
      aux["aux_semantic_logits"] = nn.Dense(self.num_classes, dtype=self.dtype, name="aux_classes")(pixels)
    if train:
      return {"class_logits": jnp.stack(classes + [class_logits], 1),
              "mask_logits": jnp.stack(masks + [mask_logits], 1), **aux}
    return {"class_logits": class_logits, "mask_logits": resize(mask_logits, *images.shape[1:3])}


EOMT_DECODERS = {"eomt": EoMTDecoder}
