"""What the ViT parity tests and the script that made their fixture (fixtures/make_vit_parity.py)
share: the four PyTorch ViTs, their weights drawn from a seed with NumPy alone, and the outputs
compared. NumPy only at import; torch, timm and transformers are imported inside the functions that
need them, so the tests read the fixture without them.

Token order of each model's sequence (N, T, D), after every block and in `out`:
  timm/vit_base_patch16_224          [cls, patches]              pos_embed (1, 1 + 14*14, D) covers cls
  timm/vit_small_patch14_reg4_dinov2 [cls, reg x4, patches]      pos_embed (1, 37*37, D) patches only
  hf/dinov3_vits16                   [cls, reg x4, patches]      no pos embedding; RoPE on patches
  hf/eomt_vits16@S                   blocks 1-9:   [cls, reg x4, patches]
                                     blocks 10-12: [queries x20, cls, reg x4, patches]
                                     position_embeddings (S/16 * S/16, D), patches only
Patches are in row-major (h, w) order. `out` is the final LayerNorm over all tokens (timm `norm`,
HF DINOv3 `norm`, HF EoMT `layernorm`).
"""
import collections
import zlib

import numpy as np

import parity

SEED = parity.SEED
FIXTURE = "vit_parity.npz"
DEPTH = 12
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

_DINOV3 = dict(  # facebook/dinov3-vits16-pretrain-lvd1689m; all DINOv3ViTConfig's defaults but the registers
    hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, patch_size=16,
    num_register_tokens=4, rope_theta=100.0, query_bias=True, key_bias=False, value_bias=True, proj_bias=True,
    mlp_bias=True, use_gated_mlp=False, layerscale_value=1.0, layer_norm_eps=1e-5, hidden_act="gelu",
    image_size=224, pos_embed_shift=None, pos_embed_jitter=None, pos_embed_rescale=2.0)


def _eomt(image_size):
  # EomtConfig's defaults kept: hidden_act "gelu" (exact), layer_norm_eps 1e-6, use_swiglu_ffn False.
  return dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=16,
              num_register_tokens=4, num_queries=20, num_blocks=3, num_upscale_blocks=2, num_labels=10,
              layerscale_value=1.0, layer_norm_eps=1e-6, hidden_act="gelu", use_swiglu_ffn=False,
              image_size=image_size)


def _timm(arch):
  return dict(model_name=arch, pretrained=False, num_classes=0, dynamic_img_size=True)


# name -> spec. mean/std: the model's own pretrained_cfg (make_vit_parity.py checks them against it).
# prefix: tokens before the patches (EoMT's blocks 10-12 add num_queries in front of these).
MODELS = collections.OrderedDict([
    ("timm/vit_base_patch16_224", dict(
        source="timm", config=_timm("vit_base_patch16_224"), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        sizes=((160, 224), (256, 192)), patch=16, prefix=1, dim=768, depth=DEPTH)),
    ("timm/vit_small_patch14_reg4_dinov2", dict(
        source="timm", config=_timm("vit_small_patch14_reg4_dinov2"), mean=_IMAGENET[0], std=_IMAGENET[1],
        sizes=((224, 280), (154, 196)), patch=14, prefix=5, dim=384, depth=DEPTH)),
    ("hf/dinov3_vits16", dict(
        source="hf", cls="DINOv3ViTModel", config=_DINOV3, mean=_IMAGENET[0], std=_IMAGENET[1],
        sizes=((160, 224), (256, 192)), patch=16, prefix=5, dim=384, depth=DEPTH)),
    ("hf/eomt_vits16@160", dict(
        source="hf", cls="EomtForUniversalSegmentation", config=_eomt(160), mean=_IMAGENET[0], std=_IMAGENET[1],
        sizes=((160, 160),), patch=16, prefix=5, dim=384, depth=DEPTH, queries=20, num_blocks=3)),
    ("hf/eomt_vits16@224", dict(
        source="hf", cls="EomtForUniversalSegmentation", config=_eomt(224), mean=_IMAGENET[0], std=_IMAGENET[1],
        sizes=((224, 224),), patch=16, prefix=5, dim=384, depth=DEPTH, queries=20, num_blocks=3)),
])

_TOKENS = ("pos_embed", "position_embeddings", "cls_token", "reg_token", "register_tokens", "mask_token",
           "query.weight")
_LAYER_SCALES = ("gamma", "layer_scale", "lambda1")


def outputs(name):
  """The keys torch_outputs returns (and the fixture holds at each size)."""
  out = [f"block{i}" for i in range(1, MODELS[name]["depth"] + 1)] + ["out"]
  if "eomt" in name:
    out += ["class_logits", "mask_logits", "class_logits_masked", "mask_logits_masked"]
  return out


def state_dict(name, keys_shapes, seed=SEED):
  """{key: float32 array} for the model's (key, shape) list, drawn as parity.state_dict draws them
  (Kaiming-sized kernels, norm scales 0.5..1.5, biases within +-0.2), except: tokens and embeddings
  (keys with one of _TOKENS) uniform in (-1, 1) from their own seed, so they count against the patch
  embeddings; layer scales (ls*.gamma, layer_scale*.lambda1) in 0.2..0.8; and EoMT's two buffers at
  the values the model is built with (attn_mask_probs 1: masked attention; the loss's class weights)."""
  del name  # the rule is the same for every model; kept for the tests' symmetry with torch_model
  out = {}
  for key, shape in keys_shapes:
    shape = tuple(shape)
    u = lambda: np.random.default_rng([seed, zlib.crc32(key.encode())]).random(shape, dtype=np.float32)  # pylint: disable=cell-var-from-loop
    if key == "attn_mask_probs":
      out[key] = np.ones(shape, np.float32)
    elif key == "criterion.empty_weight":  # EomtLoss: ones, the no-object class at no_object_weight 0.1
      out[key] = np.concatenate([np.ones(shape[0] - 1, np.float32), np.float32([0.1])])
    elif any(t in key for t in _TOKENS):
      out[key] = 2 * u() - 1
    elif key.endswith(_LAYER_SCALES):
      out[key] = 0.2 + 0.6 * u()
    else:
      out.update(parity.state_dict([(key, shape)], seed))
  return {k: v.astype(np.float32) for k, v in out.items()}


def torch_model(name):
  """The PyTorch model of MODELS[name], unweighted, float32, eval mode."""
  spec = MODELS[name]
  if spec["source"] == "timm":
    import timm  # pylint: disable=g-import-not-at-top
    model = timm.create_model(**spec["config"])
  else:
    import transformers  # pylint: disable=g-import-not-at-top
    config_cls = {"DINOv3ViTModel": transformers.DINOv3ViTConfig,
                  "EomtForUniversalSegmentation": transformers.EomtConfig}[spec["cls"]]
    model = getattr(transformers, spec["cls"])(config_cls(**spec["config"]))
  return model.float().eval()


def blocks(name, model):
  """The model's transformer blocks, in order."""
  if MODELS[name]["source"] == "timm":
    return list(model.blocks)
  if "dinov3" in name:
    return list(model.model.layer)
  return list(model.layers)


def param_count(model):
  """Number of parameters: sum of numel over model.parameters(), buffers excluded (HF DINOv3's
  inv_freq, EoMT's attn_mask_probs, position_ids and criterion.empty_weight are not counted)."""
  return int(sum(p.numel() for p in model.parameters()))


def torch_outputs(name, model, images):
  """{output: NumPy array} of the PyTorch model in eval mode on segjax-style `images` (N, H, W, 3) in
  [0, 1], standardised with the spec's mean/std, in the dtype of the model's parameters:
    block{i}  (N, T, D) the whole token sequence after block i (1-based), by forward hooks
    out       (N, T, D) the final LayerNorm over all tokens
  and for EoMT (its block tokens and `out` from the unmasked run):
    class_logits, class_logits_masked   (N, Q, num_labels + 1)
    mask_logits, mask_logits_masked     (N, 4h, 4w, Q), h, w = H / 16, W / 16 (upscaled twice by 2)
  `_masked` with masked attention in blocks 10-12 (attn_mask_probs all 1, HF's value in eval), the
  others with attn_mask_probs 0 (no masks and no intermediate predictions, as after annealing)."""
  import torch  # pylint: disable=g-import-not-at-top
  spec = MODELS[name]
  model.eval()
  dtype = next(model.parameters()).dtype
  mean, std = np.float32(spec["mean"]), np.float32(spec["std"])
  x = torch.from_numpy(((images - mean) / std).transpose(0, 3, 1, 2).copy()).to(dtype)
  out = {}
  hooks = [b.register_forward_hook(lambda m, a, o, i=i: out.__setitem__(f"block{i + 1}", o))
           for i, b in enumerate(blocks(name, model))]
  try:
    with torch.no_grad():
      if spec["source"] == "timm":
        out["out"] = model.forward_features(x)
      elif "dinov3" in name:
        out["out"] = model(pixel_values=x).last_hidden_state
      else:
        probs = model.attn_mask_probs.clone()
        try:
          for suffix, p in (("_masked", 1.0), ("", 0.0)):  # the unmasked run last: its block tokens stay
            model.attn_mask_probs.fill_(p)
            res = model(pixel_values=x)
            out["class_logits" + suffix] = res.class_queries_logits
            out["mask_logits" + suffix] = res.masks_queries_logits.permute(0, 2, 3, 1)
          out["out"] = res.last_hidden_state
        finally:
          model.attn_mask_probs.copy_(probs)
  finally:
    for h in hooks:
      h.remove()
  return {k: v.detach().numpy() for k, v in out.items()}


def fixture():
  """The recorded fixture (fixtures/vit_parity.npz)."""
  import os  # pylint: disable=g-import-not-at-top
  return np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", FIXTURE))


def drawn(name, recorded):
  """The PyTorch-format weights `recorded` was made with, drawn again without torch."""
  import json  # pylint: disable=g-import-not-at-top
  state = state_dict(name, json.loads(str(recorded[f"{name}/keys"])))
  if abs(parity.checksum(state) - float(recorded[f"{name}/checksum"])) > 1e-12 * abs(parity.checksum(state)):
    raise AssertionError("NumPy draws other numbers from the seed than when the fixture was made: remake it")
  return state


def flexivit_kernel(seed=SEED):
  """A patch embedding's kernel (out 8, in 3, 14, 14) in PyTorch's layout, for FlexiViT's resize."""
  return np.random.default_rng([seed, 14]).standard_normal((8, 3, 14, 14)).astype(np.float32)
