"""Plain ViTs: timm's (vit_*, and DINOv2 as timm names it), DINOv2's own checkpoints, DINOv3 in
Hugging Face's names, Hugging Face's EomtForUniversalSegmentation (its ViT and its EoMT head) and
SigLIP's big_vision arrays (named by segjax/weights/big_vision.py); their tensors renamed to
segjax's (segjax/models/vit.py, eomt_decoder.py), resized if asked, and checked.

Every tensor is checked against the architecture by name and shape, both ways, as for the CNNs.
A checkpoint's ImageNet classifier and DINO's mask token (a pretraining device) are left out.
"""
import json
import re

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from segjax.errors import UserError, some
from segjax.models.vit import VITS, resize_positions
from segjax.weights import big_vision

SOURCES = ("timm", "dinov2", "dinov3", "eomt", "siglip")  # siglip: big_vision's .npz (weights/big_vision.py)
ARCHS = tuple(VITS)
# Tensors a source has that a backbone does not need.
# (EoMT's mask-annealing state and its loss's class weights are training state, not weights.)
_DROPPED = re.compile(r"^(head\.|fc_norm\.|mask_token$|embeddings\.mask_token$|attn_mask_probs$|criterion\.)")

# Inside a block, each source's module names -> segjax's.
_COMMON = {"norm1": "norm1", "norm2": "norm2"}
_TIMM = {**_COMMON, "attn.qkv": "attn/qkv", "attn.proj": "attn/proj", "mlp.fc1": "mlp/fc1", "mlp.fc2": "mlp/fc2",
         "mlp.w12": "mlp/fc1", "mlp.w3": "mlp/fc2"}  # (DINOv2's own SwiGLU names)
_BLOCK = {"timm": _TIMM, "dinov2": _TIMM,
          "dinov3": {**_COMMON, "attention.o_proj": "attn/proj", "mlp.up_proj": "mlp/fc1",
                     "mlp.down_proj": "mlp/fc2"},
          "eomt": {**_COMMON, "attention.out_proj": "attn/proj", "mlp.fc1": "mlp/fc1", "mlp.fc2": "mlp/fc2"}}
_LAYERS = {"timm": "blocks", "dinov2": "blocks", "dinov3": "layer", "eomt": "layers"}
_TOP = {"timm": {"cls_token": "cls_token", "reg_token": "registers", "pos_embed": "pos_embed",
                 "patch_embed.proj": "patch_embed", "norm": "norm"},
        "dinov2": {"cls_token": "cls_token", "register_tokens": "registers", "pos_embed": "pos_embed",
                   "patch_embed.proj": "patch_embed", "norm": "norm"},
        "dinov3": {"embeddings.cls_token": "cls_token", "embeddings.register_tokens": "registers",
                   "embeddings.patch_embeddings": "patch_embed", "norm": "norm"},
        "eomt": {"embeddings.cls_token": "cls_token", "embeddings.register_tokens": "registers",
                 "embeddings.position_embeddings": "pos_embed", "embeddings.patch_embeddings.projection": "patch_embed",
                 "layernorm": "norm"}}
# EoMT's head (Hugging Face's names -> segjax's, below head/).
_EOMT_HEAD = {"query": "queries", "class_predictor": "predictor/classes", "mask_head.fc1": "predictor/mask_fc1",
              "mask_head.fc2": "predictor/mask_fc2", "mask_head.fc3": "predictor/mask_fc3"}


def _eomt_head(module, leaf, array):
  """segjax's path below head/ and array of one of EoMT's head tensors, or None."""
  if module in _EOMT_HEAD:
    path = _EOMT_HEAD[module]
    if path == "queries":
      return path, array
    name, array = _leaf(path, leaf, array)
    return f"{path}/{name}", array
  m = re.fullmatch(r"upscale_block\.block\.(\d+)\.(conv1|conv2|layernorm2d)", module)
  if m is None:
    return None
  up = f"predictor/upscale{int(m.group(1)) + 1}"
  if m.group(2) == "conv1":  # ConvTranspose2d (in, out, 2, 2) -> segjax's matmul (in, 2, 2, out)
    return (f"{up}/deconv/kernel", array.transpose(0, 2, 3, 1)) if leaf == "weight" else (f"{up}/deconv_bias", array)
  if m.group(2) == "conv2":  # depthwise (D, 1, 3, 3) -> (3, 3, 1, D)
    return f"{up}/dwconv/kernel", array.transpose(2, 3, 1, 0)
  return f"{up}/norm/{'scale' if leaf == 'weight' else 'bias'}", array


def _leaf(path, torch_leaf, array):
  """segjax's leaf name and array for a PyTorch weight or bias of the module at `path`."""
  if torch_leaf == "bias":
    return "bias", array
  if path.endswith(("norm1", "norm2")) or path == "norm":
    return "scale", array
  if array.ndim == 4:  # a conv kernel (out, in, kh, kw) -> (kh, kw, in, out)
    return "kernel", array.transpose(2, 3, 1, 0)
  return "kernel", array.T


def rename(state_dict, source):
  """{segjax path ("backbone/block1/attn/qkv/kernel"): array} and the names it could not place."""
  out, head, unknown, qkv = {}, {}, [], {}
  top, layer = _TOP[source], _LAYERS[source]
  for key, array in state_dict.items():
    key = key[len("model."):] if source == "dinov3" and key.startswith("model.") else key
    if _DROPPED.match(key):
      continue
    array = np.asarray(array, np.float32)
    module, _, leaf = key.rpartition(".")
    if source == "eomt" and (found := _eomt_head(module, leaf, array)):
      head[found[0]] = found[1]
      continue
    if source == "eomt" and module == "embeddings.position_embeddings":  # an nn.Embedding (N, D)
      out["pos_embed"] = array[None]
      continue
    if key in top:  # a parameter of the model itself
      out[top[key]] = array
      continue
    if module in top:
      name, array = _leaf(top[module], leaf, array)
      out[f"{top[module]}/{name}"] = array
      continue
    m = re.fullmatch(rf"{layer}\.(\d+)\.(.+)", module)
    if m is None:
      unknown.append(key)
      continue
    block, inner = f"block{int(m.group(1)) + 1}", m.group(2)
    if inner in ("ls1", "ls2", "layer_scale1", "layer_scale2"):  # gamma / lambda1
      out[f"{block}/ls{inner[-1]}"] = array
      continue
    q = re.fullmatch(r"attention\.([qkv])_proj", inner)
    if q:  # Hugging Face's separate projections, stacked q, k, v as one qkv
      qkv.setdefault(block, {})[(q.group(1), leaf)] = array
      continue
    names = _BLOCK[source]
    if inner not in names:
      unknown.append(key)
      continue
    name, array = _leaf(names[inner], leaf, array)
    out[f"{block}/{names[inner]}/{name}"] = array
  for block, parts in qkv.items():
    weights = [parts.get((p, "weight")) for p in "qkv"]
    if any(w is None for w in weights):  # named as the block's other projections are
      unknown.extend(f"{layer}.{int(block[5:]) - 1}.attention.{p}_proj.weight (missing)"
                     for p, w in zip("qkv", weights) if w is None)
      continue
    out[f"{block}/attn/qkv/kernel"] = np.concatenate(weights, 0).T
    biases = {p: parts[(p, "bias")] for p in "qkv" if (p, "bias") in parts}
    if set(biases) == set("qkv"):
      out[f"{block}/attn/qkv/bias"] = np.concatenate([biases[p] for p in "qkv"])
    elif set(biases) == set("qv"):  # DINOv3's: no key bias
      out[f"{block}/attn/qv_bias"] = np.stack([biases["q"], biases["v"]])
    else:
      unknown.append(f"{layer}.{int(block[5:]) - 1}.attention biases of {', '.join(sorted(biases)) or 'none'} "
                     "(a ViT has q, k and v's, or DINOv3's q and v's)")
  return {**{f"backbone/{k}": v for k, v in out.items()}, **{f"head/{k}": v for k, v in head.items()}}, unknown


def resample_patch_embed(kernel, size):
  """A patch embedding's kernel (p, p, in, out) for patches of `size` (FlexiViT's pseudo-inverse
  resize, Beyer et al. CVPR 2023, as timm's resample_patch_embed and EoMT use it): the kernel whose
  tokens of a bicubically resized patch are the old kernel's tokens of the patch, as near as least
  squares allows."""
  old = kernel.shape[0]
  basis = np.eye(old * old, dtype=np.float32).reshape(-1, old, old)
  resize = np.asarray(jax.image.resize(basis, (old * old, size, size), "bicubic", antialias=True), np.float64)
  inverse = np.linalg.pinv(resize.reshape(old * old, size * size))  # (size^2, old^2)
  flat = kernel.reshape(old * old, -1).astype(np.float64)
  return (inverse @ flat).reshape(size, size, *kernel.shape[2:]).astype(np.float32)


def fold_class_position(flat, arch):
  """`flat` with a position embedding's class-token entry folded into the class token, for an arch
  whose embedding covers the patches alone (DINOv2's own checkpoints, and timm's DINOv2 without
  registers, keep the entry first; the token gets it whatever the input size, so adding it once is
  the same)."""
  model, pos = VITS[arch](), flat.get("backbone/pos_embed")
  patches = int(np.prod(model.grid))
  if (pos is None or model.embed_prefix or not model.class_token or "backbone/cls_token" not in flat
      or pos.shape[1] != patches + 1):
    return flat
  return {**flat, "backbone/cls_token": flat["backbone/cls_token"] + pos[:, :1], "backbone/pos_embed": pos[:, 1:]}


def resized(flat, arch, patch=None, grid=None):
  """`flat` with its patch embedding resampled to `patch` and its position embedding resized to
  `grid` (h, w) (a converter option: a model built for that size computes as before)."""
  flat = dict(flat)
  if patch and "backbone/patch_embed/kernel" in flat:
    flat["backbone/patch_embed/kernel"] = resample_patch_embed(flat["backbone/patch_embed/kernel"], patch)
  if grid and "backbone/pos_embed" in flat:
    model, pos = VITS[arch](), flat["backbone/pos_embed"][0]
    lead = model.prefix if model.embed_prefix else 0
    side = int(round(np.sqrt(pos.shape[0] - lead)))
    patches = np.asarray(resize_positions(pos[lead:], (side, side), tuple(grid)))
    flat["backbone/pos_embed"] = np.concatenate([pos[:lead], patches])[None].astype(np.float32)
  return flat


def layout(arch, kwargs, head=None):
  """{segjax path: shape} of the backbone `arch` built with `kwargs`, and of an EoMT head of
  (num_classes, num_queries, upscale) if given."""
  from segjax.models import EoMTDecoder, Segmenter  # pylint: disable=g-import-not-at-top
  backbone = VITS[arch](**kwargs)
  decoders = () if head is None else (("head", EoMTDecoder(*head[:2], blocks=1, upscale=head[2]), None),)
  model = Segmenter(backbone, decoders)
  size = backbone.patch * 2
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
  return {"/".join(k): tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes["params"]).items()}


def built(flat, arch, grid=None):
  """The backbone keyword arguments that differ from `arch`'s and that the file's shapes say: its
  patch size and position grid (`grid` when the converter resized it to that; else the square the
  file holds), e.g. DINOv2 resized to patch 16 for EoMT."""
  model, kwargs = VITS[arch](), {}
  kernel = flat.get("backbone/patch_embed/kernel")
  if kernel is not None and kernel.shape[0] != model.patch:
    kwargs["patch"] = int(kernel.shape[0])
  pos = flat.get("backbone/pos_embed")
  if pos is not None and model.position == "learned":
    if grid is None:
      side = int(round(np.sqrt(pos.shape[1] - (model.prefix if model.embed_prefix else 0))))
      grid = (side, side)
    if tuple(grid) != tuple(model.grid):
      kwargs["grid"] = tuple(grid)
  return kwargs


def _head(flat):
  """(num_classes, num_queries, upscale blocks) of an EoMT head in the file, or None."""
  if "head/queries" not in flat or "head/predictor/classes/kernel" not in flat:
    return None
  upscale = len({k.split("/")[2] for k in flat if k.startswith("head/predictor/upscale")})
  return flat["head/predictor/classes/kernel"].shape[1] - 1, flat["head/queries"].shape[0], upscale


def metadata(arch, kwargs):
  """What a ViT's file records beyond its arch: the statistics its model standardises with and the
  keyword arguments it was built with beyond the arch's (config.model.backbone_kwargs)."""
  model = VITS[arch](**kwargs)
  return {"mean": json.dumps(list(model.mean)), "std": json.dumps(list(model.std)),
          "backbone_kwargs": json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()})}


def check_names(arch, source):
  if arch not in VITS:
    raise UserError(f"Unknown --arch '{arch}': choose one of {', '.join(ARCHS)}.")
  if source not in SOURCES:
    raise UserError(f"Unknown --source '{source}' for a ViT: choose one of {', '.join(SOURCES)}.")


def _guess(state_dict):
  """The first (arch, source) that converts the checkpoint, of those of its width and depth, or None."""
  widths = {v.shape[-1] for k, v in state_dict.items() if k.endswith("cls_token")}
  depth = 1 + max((int(m.group(1)) for k in state_dict for m in [re.search(r"(?:blocks|layers?)\.(\d+)\.", k)]
                   if m), default=-1)
  for arch in ARCHS:
    model = VITS[arch]()
    if model.dim in widths and model.depth == depth:
      for source in SOURCES:
        try:
          _convert(state_dict, arch, source, "")
          return arch, source
        except UserError:
          pass
  return None


def convert(state_dict, arch, source, where="the checkpoint", patch=None, grid=None):
  """(nested Flax variables {"params": {"backbone": ..., "head": ...}}, the backbone keyword
  arguments it needs beyond `arch`'s) of a PyTorch state dict in `source`'s naming, its patch
  embedding resampled to `patch` and position embedding resized to `grid` if given; UserError
  naming what is missing, left over or of the wrong shape, and the arch and source it looks like."""
  check_names(arch, source)
  try:
    return _convert(state_dict, arch, source, where, patch, grid)
  except UserError as e:
    guess = _guess(state_dict)
    hint = f"it looks like {guess[1]}'s {guess[0]}: pass --arch={guess[0]} --source={guess[1]}" if guess else \
        "check --arch and --source"
    raise UserError(f"{e}; {hint}.") from None


def _convert(state_dict, arch, source, where, patch=None, grid=None):
  flat, unknown = big_vision.rename(state_dict) if source == "siglip" else rename(state_dict, source)
  if grid and VITS[arch]().position != "learned":
    raise UserError(f"--grid resizes a learned position embedding; {arch} has rotary positions, which "
                    "need no resizing.")
  flat = resized(fold_class_position(flat, arch), arch, patch, grid)
  kwargs = built(flat, arch, grid)
  wanted = layout(arch, kwargs, _head(flat))
  missing = sorted(k for k in wanted if k not in flat)
  extra = sorted(unknown + [k for k in flat if k not in wanted])
  if missing or extra:
    problem = f"lacks {some(missing, 'tensors')}" if missing else ""
    if extra:
      problem += (" and " if problem else "") + f"has {some(extra, 'tensors')} that {arch} does not"
    raise UserError(f"{where} is not {source}'s {arch}: it {problem}")
  for key, shape in wanted.items():
    if flat[key].shape != shape:
      raise UserError(f"{where} holds {key} with shape {flat[key].shape} where {source}'s {arch} has {shape}")
  return {"params": traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})}, kwargs
