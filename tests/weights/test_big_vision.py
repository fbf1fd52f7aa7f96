"""SigLIP in big_vision's .npz layout: written here as big_vision saves it (per-block arrays, or one
stacked `encoderblock` as a scanned model saves them), converted, loaded, and its first block
computed as big_vision's Flax modules compute it (NumPy below)."""
import json
import math

from flax import traverse_util
import jax
import numpy as np
import pytest

from segjax import convert, weights
from segjax.models import VITS
from segjax.weights import big_vision, torch_vit

D, HEADS, DEPTH, MLP, PATCH, GRID = 768, 12, 12, 3072, 16, 14  # SigLIP B/16 at 224


def _arrays(stacked):
  """A SigLIP B/16 image tower (and a text tower, t and b, dropped by the converter) in big_vision's names."""
  rng = np.random.default_rng(0)
  draw = lambda *shape, scale=None: (rng.standard_normal(shape, np.float32)
                                     * (scale or 1 / math.sqrt(np.prod(shape[:-1]) if len(shape) > 1 else 1)))
  a = {"params/img/embedding/kernel": draw(PATCH, PATCH, 3, D), "params/img/embedding/bias": draw(D, scale=0.1),
       "params/img/pos_embedding": draw(1, GRID * GRID, D, scale=0.5),
       "params/img/Transformer/encoder_norm/scale": 1 + draw(D, scale=0.1),
       "params/img/Transformer/encoder_norm/bias": draw(D, scale=0.1),
       "params/img/MAPHead_0/probe": draw(1, 1, D), "params/txt/Embed_0/embedding": draw(10, D),
       "params/t": np.float32([1.0]), "params/b": np.float32([-10.0])}
  block = lambda: {"LayerNorm_0/scale": 1 + draw(D, scale=0.1), "LayerNorm_0/bias": draw(D, scale=0.1),
                   "LayerNorm_1/scale": 1 + draw(D, scale=0.1), "LayerNorm_1/bias": draw(D, scale=0.1),
                   **{f"MultiHeadDotProductAttention_0/{p}/kernel": draw(D, HEADS, D // HEADS)
                      for p in ("query", "key", "value")},
                   **{f"MultiHeadDotProductAttention_0/{p}/bias": draw(HEADS, D // HEADS, scale=0.1)
                      for p in ("query", "key", "value")},
                   "MultiHeadDotProductAttention_0/out/kernel": draw(HEADS, D // HEADS, D),
                   "MultiHeadDotProductAttention_0/out/bias": draw(D, scale=0.1),
                   "MlpBlock_0/Dense_0/kernel": draw(D, MLP), "MlpBlock_0/Dense_0/bias": draw(MLP, scale=0.1),
                   "MlpBlock_0/Dense_1/kernel": draw(MLP, D), "MlpBlock_0/Dense_1/bias": draw(D, scale=0.1)}
  blocks = [block() for _ in range(DEPTH)]
  prefix = "params/img/Transformer/encoderblock"
  if stacked:
    a.update({f"{prefix}/{k}": np.stack([b[k] for b in blocks]) for k in blocks[0]})
  else:
    a.update({f"{prefix}_{i}/{k}": v for i, b in enumerate(blocks) for k, v in b.items()})
  return a


def _first_block(a, images):
  """big_vision's embedding and first encoder block, in NumPy."""
  img = lambda k: a[f"params/img/{k}"]
  blk = lambda k: a.get(f"params/img/Transformer/encoderblock_0/{k}")
  x = (images - 0.5) / 0.5
  n, h, w, _ = x.shape
  patches = x.reshape(n, h // PATCH, PATCH, w // PATCH, PATCH, 3).transpose(0, 1, 3, 2, 4, 5)
  x = np.einsum("nhwijc,ijcd->nhwd", patches, img("embedding/kernel")) + img("embedding/bias")
  x = x.reshape(n, -1, D) + img("pos_embedding")
  norm = lambda v, k: (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-6) * blk(
      f"{k}/scale") + blk(f"{k}/bias")
  y = norm(x, "LayerNorm_0")
  att = "MultiHeadDotProductAttention_0"
  q, k, v = (np.einsum("ntd,dhk->nthk", y, blk(f"{att}/{p}/kernel")) + blk(f"{att}/{p}/bias")
             for p in ("query", "key", "value"))
  scores = np.einsum("nqhk,nthk->nhqt", q, k) / math.sqrt(D // HEADS)
  weights_ = np.exp(scores - scores.max(-1, keepdims=True))
  weights_ /= weights_.sum(-1, keepdims=True)
  y = np.einsum("nhqt,nthk->nqhk", weights_, v)
  x = x + np.einsum("nqhk,hkd->nqd", y, blk(f"{att}/out/kernel")) + blk(f"{att}/out/bias")
  y = norm(x, "LayerNorm_1") @ blk("MlpBlock_0/Dense_0/kernel") + blk("MlpBlock_0/Dense_0/bias")
  y = 0.5 * y * (1 + np.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * y**3)))  # flax's default gelu
  return x + y @ blk("MlpBlock_0/Dense_1/kernel") + blk("MlpBlock_0/Dense_1/bias")


def test_a_siglip_npz_converts_loads_and_computes_big_visions_first_block(tmp_path):
  arrays = _arrays(stacked=False)
  path = str(tmp_path / "siglip.npz")
  np.savez(path, **arrays)
  out = str(tmp_path / "w.safetensors")
  assert convert.convert_file(path, out, "vit_base_patch16_siglip", "siglip").startswith(
      f"Wrote {out}: siglip's vit_base_patch16_siglip, backbone,")
  meta = weights.metadata(out)
  assert json.loads(meta["mean"]) == [0.5, 0.5, 0.5] and json.loads(meta["backbone_kwargs"]) == {}
  flat, _ = weights.load(out)
  variables = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
  model = VITS["vit_base_patch16_siglip"]()
  images = np.random.default_rng(1).random((1, 224, 224, 3), np.float32)
  tokens = model.apply({"params": variables["params"]["backbone"]}, images,
                       method=lambda m, x: m.blocks(m.embed(x), x, 0, 1, False))
  ref = _first_block(arrays, images)
  assert np.abs(np.asarray(tokens) - ref).max() / np.sqrt(np.mean(ref**2)) < 1e-4
  count = sum(x.size for x in jax.tree.leaves(variables))
  assert count == sum(v.size for k, v in arrays.items() if k.startswith("params/img/") and "MAPHead" not in k)


def test_stacked_blocks_convert_as_per_block_ones():
  ours, _ = torch_vit.convert({k[len("params/"):]: v for k, v in _arrays(stacked=True).items()},
                              "vit_base_patch16_siglip", "siglip")
  theirs, _ = big_vision.rename({k[len("params/"):]: v for k, v in _arrays(stacked=False).items()})
  flat = {"/".join(k): v for k, v in traverse_util.flatten_dict(ours["params"]).items()}
  assert flat.keys() == theirs.keys()
  for key in flat:
    np.testing.assert_array_equal(flat[key], theirs[key])
