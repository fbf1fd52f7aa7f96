"""Plain Vision Transformers (Dosovitskiy et al. 2021) as timm, DINOv2, DINOv3 and SigLIP build them:
images (N, H, W, 3) in [0, 1] -> patch tokens at stride `patch`, and the blocks themselves, for a
head that runs inside the encoder (EoMT).

Tokens are [class token, registers, patches] (a head may put its own before them); position comes
from a learned absolute embedding on a `grid`, resized to the input's grid, or from DINOv3's rotary
embedding on the patches. The mean and std the weights were trained with are fields of the model,
so a converted file's statistics travel with its architecture (segjax.weights checks them).

A ViT trained from scratch on little data may start with a convolutional `stem` (Xiao et al., "Early
Convolutions Help Transformers See Better", NeurIPS 2021; with residual units, the hybrid of
Dosovitskiy et al.'s section 3.1): stride-2 stages of 3x3 convolutions with LayerNorm and GELU before
a patch embedding of the remaining stride, so that outlines smaller than a patch reach the tokens.

Variables: `stem{i}/{down, unit{j}a, unit{j}b}_{conv, norm}` (with a stem), `patch_embed`,
`cls_token`, `registers`, `pos_embed`, `block{i}/{norm1, attn/{qkv, proj}, ls1, norm2, mlp/{fc1, fc2},
ls2}` and `norm`.
"""
import functools
import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from segjax.models.layers import attention, gelu

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # timm's augreg ViTs and SigLIP

_INIT = nn.initializers.truncated_normal(0.02)


def resize_positions(pos, grid, size):
  """A learned position embedding (g_h * g_w, D) on `grid`, resized to `size` (h, w) as timm does
  when an input is not the size a model was built for: bicubic (Keys, a = -0.5) with antialiasing
  when shrinking, in float32.

  DINOv2's and Hugging Face's own code resizes without antialiasing and with PyTorch's bicubic
  (a = -0.75): the same at the built size, a little different elsewhere, most when shrinking.
  """
  if tuple(grid) == tuple(size):
    return pos
  grid_pos = pos.reshape(*grid, pos.shape[-1]).astype(jnp.float32)
  return jax.image.resize(grid_pos, (*size, pos.shape[-1]), "bicubic", antialias=True).reshape(-1, pos.shape[-1])


def rope_angles(size, head_dim, theta):
  """DINOv3's rotary embedding of an (h, w) patch grid: (cos, sin), each (h * w, head_dim), as NumPy.

  Patch centres are normalised to [-1, 1] on each axis; head_dim / 4 frequencies theta^-k per
  axis, y's then x's, repeated twice, to rotate each half of a head against the other."""
  h, w = size
  freq = 1.0 / theta ** np.arange(0, 1, 4 / head_dim, dtype=np.float32)
  ys = (np.arange(0.5, h, dtype=np.float32) / h) * 2 - 1
  xs = (np.arange(0.5, w, dtype=np.float32) / w) * 2 - 1
  coords = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
  angles = 2 * np.pi * coords[:, :, None] * freq[None, None, :]
  angles = np.tile(angles.reshape(len(coords), -1), 2)
  return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _rotate(x, cos, sin):
  """Rotary embedding on the last len(cos) tokens of x (N, T, heads, head_dim)."""
  n = cos.shape[0]
  prefix, patches = x[:, :-n], x[:, -n:]
  half = patches.shape[-1] // 2
  turned = jnp.concatenate([-patches[..., half:], patches[..., :half]], -1)
  c, s = cos[None, :, None].astype(x.dtype), sin[None, :, None].astype(x.dtype)
  return jnp.concatenate([prefix, patches * c + turned * s], axis=1)


class Attention(nn.Module):
  """Self-attention with one qkv projection (q, k, v stacked in that order on the output axis);
  `mask` (N, 1, T, T) is True where a token may attend. Without `key_bias` (DINOv3) the projection's
  bias is q's and v's alone, `qv_bias`: a key bias adds the same to all of a query's scores."""
  dim: int
  heads: int
  key_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, rope=None, mask=None):
    n, t, _ = x.shape
    qkv = nn.Dense(3 * self.dim, use_bias=self.key_bias, kernel_init=_INIT, dtype=self.dtype, name="qkv")(x)
    if not self.key_bias:
      q_v = self.param("qv_bias", nn.initializers.zeros, (2, self.dim))
      qkv = qkv + jnp.concatenate([q_v[0], jnp.zeros(self.dim), q_v[1]]).astype(qkv.dtype)
    q, k, v = jnp.split(qkv.reshape(n, t, 3, self.heads, self.dim // self.heads), 3, axis=2)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
    if rope is not None:
      q, k = _rotate(q, *rope), _rotate(k, *rope)
    # q scaled here, not the scores: XLA's CPU backend builds the scale as a (N, heads, T, T) array.
    q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    out = attention(q, k, v, mask)
    return nn.Dense(self.dim, kernel_init=_INIT, dtype=self.dtype, name="proj")(out.reshape(n, t, self.dim))


class Mlp(nn.Module):
  """fc1, GELU (exact, or tanh's approximation as big_vision's SigLIP), fc2; or SwiGLU (DINOv2's
  ViT-g): fc1 gives gate and value, fc2 their product."""
  dim: int
  hidden: int
  swiglu: bool = False
  tanh_gelu: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = nn.Dense((2 if self.swiglu else 1) * self.hidden, kernel_init=_INIT, dtype=self.dtype, name="fc1")(x)
    if self.swiglu:
      gate, value = jnp.split(y, 2, axis=-1)
      y = nn.silu(gate) * value
    else:
      y = nn.gelu(y, approximate=True) if self.tanh_gelu else gelu(y)  # exact: PyTorch's nn.GELU
    return nn.Dense(self.dim, kernel_init=_INIT, dtype=self.dtype, name="fc2")(y)


class Block(nn.Module):
  """Pre-norm attention and MLP, each scaled by its layer scale (if any), with stochastic depth."""
  dim: int
  heads: int
  mlp_hidden: int
  swiglu: bool = False
  tanh_gelu: bool = False
  layer_scale: Optional[float] = None
  norm_eps: float = 1e-6
  key_bias: bool = True
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train, rope=None, mask=None):
    norm = lambda name: nn.LayerNorm(self.norm_eps, use_fast_variance=False, dtype=self.dtype, name=name)
    y = Attention(self.dim, self.heads, self.key_bias, self.dtype, name="attn")(norm("norm1")(x), rope, mask)
    x = x + self._branch(y, "ls1", train)
    y = Mlp(self.dim, self.mlp_hidden, self.swiglu, self.tanh_gelu, self.dtype, name="mlp")(norm("norm2")(x))
    return x + self._branch(y, "ls2", train)

  def _branch(self, y, name, train):
    if self.layer_scale is not None:
      y = y * self.param(name, nn.initializers.constant(self.layer_scale), (self.dim,), jnp.float32).astype(y.dtype)
    if train and self.drop_path > 0:  # drop the whole branch of some images
      keep = jax.random.bernoulli(self.make_rng("dropout"), 1 - self.drop_path, (y.shape[0], 1, 1))
      y = jnp.where(keep, y / (1 - self.drop_path), 0).astype(y.dtype)
    return y


class StemStage(nn.Module):
  """A 3x3 stride-2 convolution, then `blocks` residual units of two 3x3 convolutions, each
  convolution followed by a LayerNorm over channels and GELU (the unit's last one adds first)."""
  width: int
  blocks: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    def conv_norm(x, stride, name):
      x = nn.Conv(self.width, (3, 3), stride, padding=((1, 1), (1, 1)), dtype=self.dtype, name=f"{name}_conv")(x)
      return nn.LayerNorm(1e-6, use_fast_variance=False, dtype=self.dtype, name=f"{name}_norm")(x)

    x = gelu(conv_norm(x, 2, "down"))
    for i in range(self.blocks):
      y = gelu(conv_norm(x, 1, f"unit{i + 1}a"))
      x = gelu(x + conv_norm(y, 1, f"unit{i + 1}b"))
    return x


class ViT(nn.Module):
  """A plain ViT. As a backbone it returns `out` (the normed patch tokens, stride `patch`), `tokens`
  (every normed token, (N, T, D)) and, for multi-scale decoders, `stage1`..`stage4`, `fine`, `low`:
  `out` resized to strides 4, 8, 16, 32 without parameters (a ViT has one scale).

  A head that runs inside it calls `embed`, `blocks` and `norm_tokens` itself (segjax/models/
  eomt_decoder.py). `drop_path_rate` rises linearly from 0 at the first block to this at the last
  and acts only in training, with the "dropout" RNG.
  """
  patch: int = 16
  stem: Sequence[int] = ()  # widths of the stride-2 stages before the patch embedding
  stem_blocks: Sequence[int] = ()  # residual units in each stage of the stem; () for none
  dim: int = 768
  depth: int = 12
  heads: int = 12
  mlp_hidden: int = 3072
  swiglu: bool = False
  tanh_gelu: bool = False
  class_token: bool = True
  registers: int = 0
  position: str = "learned"  # or "rope" (DINOv3)
  grid: Sequence[int] = (14, 14)  # the learned embedding's patch grid (224 / 16)
  # Whether the learned embedding also has entries for the class token and registers (timm's
  # vit_*), or for the patches only (DINOv2 with registers as timm keeps it, Hugging Face's EoMT,
  # SigLIP; segjax.convert folds a class-token entry, as DINOv2's own checkpoints have, into the token).
  embed_prefix: bool = True
  layer_scale: Optional[float] = None  # the layer scales' initial value; None: no layer scale
  rope_theta: float = 100.0
  norm_eps: float = 1e-6
  key_bias: bool = True
  drop_path_rate: float = 0.0
  mean: Sequence[float] = IMAGENET[0]
  std: Sequence[float] = IMAGENET[1]
  dtype: Any = jnp.float32

  def setup(self):
    if self.position not in ("learned", "rope"):
      raise ValueError(f"Unknown position '{self.position}': choose learned or rope.")
    if self.dim % self.heads:
      raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}.")
    rest = self.patch // 2**len(self.stem)
    if rest * 2**len(self.stem) != self.patch:
      raise ValueError(f"patch {self.patch} is not a multiple of the stem's stride {2**len(self.stem)}.")
    if self.stem_blocks and len(self.stem_blocks) != len(self.stem):
      raise ValueError(f"stem_blocks {tuple(self.stem_blocks)} needs one entry for each of the stem's "
                       f"{len(self.stem)} stages.")
    for i, width in enumerate(self.stem):
      setattr(self, f"stem{i + 1}", StemStage(width, self.stem_blocks[i] if self.stem_blocks else 0, self.dtype))
    self.patch_embed = nn.Conv(self.dim, (rest,) * 2, (rest,) * 2, padding="VALID", kernel_init=_INIT,
                               dtype=self.dtype)
    if self.class_token:
      self.cls_token = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, self.dim))
    if self.registers:
      self.register_tokens = self.param("registers", nn.initializers.normal(1e-6), (1, self.registers, self.dim))
    if self.position == "learned":
      n = int(np.prod(self.grid)) + (self.prefix if self.embed_prefix else 0)
      self.pos_embed = self.param("pos_embed", _INIT, (1, n, self.dim))
    rates = [self.drop_path_rate * i / max(self.depth - 1, 1) for i in range(self.depth)]
    for i in range(self.depth):  # named block1..blockN, as setup names a module by its attribute
      setattr(self, f"block{i + 1}", Block(self.dim, self.heads, self.mlp_hidden, self.swiglu, self.tanh_gelu,
                                           self.layer_scale, self.norm_eps, self.key_bias, rates[i], self.dtype))
    self.norm = nn.LayerNorm(self.norm_eps, use_fast_variance=False, dtype=self.dtype)

  @property
  def prefix(self):
    """Tokens before the patches: the class token and the registers."""
    return int(self.class_token) + self.registers

  def grid_of(self, images):
    """The patch grid of `images`: pixels beyond a multiple of the patch size are not seen."""
    return images.shape[1] // self.patch, images.shape[2] // self.patch

  def embed(self, images):
    """Tokens (N, prefix + h * w, D) of images in [0, 1], standardised with the model's statistics."""
    x = ((images - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(self.dtype)
    size = self.grid_of(images)
    x = x[:, :size[0] * self.patch, :size[1] * self.patch]
    for i in range(len(self.stem)):
      x = getattr(self, f"stem{i + 1}")(x)
    x = self.patch_embed(x)
    n = x.shape[0]
    x = x.reshape(n, -1, self.dim)
    prefix = jnp.concatenate([jnp.zeros((1, 0, self.dim))] + ([self.cls_token] if self.class_token else [])
                             + ([self.register_tokens] if self.registers else []), axis=1)
    if self.position == "learned":
      pos = self.pos_embed[0]
      lead = self.prefix if self.embed_prefix else 0
      x = x + resize_positions(pos[lead:], self.grid, size).astype(x.dtype)
      prefix = prefix + pos[None, :lead] if lead else prefix  # the prefix tokens' own entries
    return jnp.concatenate([jnp.broadcast_to(prefix.astype(x.dtype), (n, *prefix.shape[1:])), x], axis=1)

  def blocks(self, x, images, start, stop, train, mask=None):
    """Blocks start..stop-1 (0-based) on tokens x whose last h * w are the patches of `images`;
    `mask` (N, 1, T, T), True where a token may attend."""
    rope = None
    if self.position == "rope":
      rope = rope_angles(self.grid_of(images), self.dim // self.heads, self.rope_theta)
    for i in range(start, stop):
      x = getattr(self, f"block{i + 1}")(x, train, rope, mask)
    return x

  def norm_tokens(self, x):
    return self.norm(x)

  def __call__(self, images, train):
    x = self.norm_tokens(self.blocks(self.embed(images), images, 0, self.depth, train))
    h, w = self.grid_of(images)
    out = x[:, -h * w:].reshape(x.shape[0], h, w, self.dim)
    height, width = images.shape[1:3]
    stages = {f"stage{i + 1}": jax.image.resize(out, (out.shape[0], max(height // 2**(i + 2), 1),
                                                      max(width // 2**(i + 2), 1), self.dim), "bilinear")
              for i in range(4)}
    return {**stages, "fine": stages["stage1"], "low": stages["stage1"], "out": out, "tokens": x}


def _vit(patch, dim, depth, heads, mlp_hidden=None, **kwargs):
  return functools.partial(ViT, patch=patch, dim=dim, depth=depth, heads=heads,
                           mlp_hidden=mlp_hidden or 4 * dim, **kwargs)


_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}
# timm's vit_*_patch16_224 (augreg: mean and std 0.5, no layer scale, a 14 x 14 grid with the class token).
TIMM = {f"vit_{size}_patch16": _vit(16, *dims, mean=HALF[0], std=HALF[1]) for size, dims in _SIZES.items()}
# DINOv2 as timm names it (vit_*_patch14_dinov2, _reg4_): built at 518 (a 37 x 37 grid), layer scale.
_DINOV2 = dict(grid=(37, 37), embed_prefix=False, layer_scale=1e-5)
DINOV2 = {f"vit_{size}_patch14{reg}_dinov2": _vit(14, *dims, registers=r, **_DINOV2)
          for size, dims in [*list(_SIZES.items())[1:], ("giant", (1536, 40, 24))]
          for reg, r in (("", 0), ("_reg4", 4))}
for _name in ("vit_giant_patch14_dinov2", "vit_giant_patch14_reg4_dinov2"):  # SwiGLU, 4096 wide
  DINOV2[_name] = functools.partial(DINOV2[_name], swiglu=True, mlp_hidden=4096)
# DINOv3 (rotary position, 4 registers, LayerNorm epsilon 1e-5, no key bias).
DINOV3 = {f"vit_{size}_patch16_dinov3": _vit(16, *dims, registers=4, position="rope", layer_scale=1e-5,
                                              norm_eps=1e-5, key_bias=False)
          for size, dims in list(_SIZES.items())[1:]}
# SigLIP's image towers (big_vision; at 224: a 14 x 14 or 16 x 16 grid, no class token, tanh GELU).
SIGLIP = {"vit_base_patch16_siglip": _vit(16, 768, 12, 12),
          "vit_large_patch16_siglip": _vit(16, 1024, 24, 16),
          "vit_so400m_patch14_siglip": _vit(14, 1152, 27, 16, mlp_hidden=4304, grid=(16, 16))}
SIGLIP = {name: functools.partial(make, class_token=False, embed_prefix=False, tanh_gelu=True, mean=HALF[0],
                                  std=HALF[1]) for name, make in SIGLIP.items()}
VITS = {**TIMM, **DINOV2, **DINOV3, **SIGLIP}
del _name
