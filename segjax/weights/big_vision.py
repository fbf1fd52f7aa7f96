"""SigLIP's image tower from big_vision's `.npz` checkpoints (e.g. webli_en_b16_224_*.npz) to segjax's
ViT: `img/embedding`, `img/pos_embedding`, `img/Transformer/encoderblock_{i}/...` (or one
`encoderblock` whose arrays stack every block on a first axis, as a scanned model saves them) and
`img/Transformer/encoder_norm`. The text tower, the attention-pooling head and the temperature and
bias are left out.
"""
import re

import numpy as np

from segjax.errors import UserError

_NAMES = {"LayerNorm_0": "norm1", "LayerNorm_1": "norm2", "MlpBlock_0/Dense_0": "mlp/fc1",
          "MlpBlock_0/Dense_1": "mlp/fc2"}


def read_npz(path):
  """{name: array} of a big_vision checkpoint, its names without the leading `params/`."""
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k[len("params/"):] if k.startswith("params/") else k: f[k] for k in f.files}
  except Exception as e:  # pylint: disable=broad-except  (NumPy raises several types)
    raise UserError(f"Cannot read '{path}' as a big_vision .npz checkpoint ({e}).") from e


def _block(name, array, dim):
  """segjax's path below a block and array of one of big_vision's block arrays, or None."""
  for theirs, ours in _NAMES.items():
    if name.startswith(theirs + "/"):
      leaf = name[len(theirs) + 1:]
      return f"{ours}/{leaf}", array
  m = re.fullmatch(r"MultiHeadDotProductAttention_0/(query|key|value|out)/(kernel|bias)", name)
  if m is None:
    return None
  part, leaf = m.groups()
  if part == "out":  # (heads, head_dim, D) -> (D', D); bias (D,)
    return f"attn/proj/{leaf}", array.reshape(dim, -1) if leaf == "kernel" else array
  return f"attn/{part}/{leaf}", array.reshape(dim, -1) if leaf == "kernel" else array.reshape(-1)


def rename(arrays):
  """({segjax path: array} of the image tower, the names it could not place)."""
  out, unknown, qkv = {}, [], {}
  blocks = {}
  for name, array in arrays.items():
    array = np.asarray(array, np.float32)
    if not name.startswith("img/") or name.startswith("img/MAPHead") or name == "img/head/kernel" or \
        name == "img/head/bias":
      continue  # the text tower, the pooling head, t and b: not the backbone
    name = name[len("img/"):]
    if name in ("embedding/kernel", "embedding/bias"):  # already (p, p, 3, D)
      out[f"patch_embed/{name.split('/')[1]}"] = array
    elif name == "pos_embedding":
      out["pos_embed"] = array
    elif name.startswith("Transformer/encoder_norm/"):
      out[f"norm/{name.rsplit('/', 1)[1]}"] = array
    elif (m := re.fullmatch(r"Transformer/encoderblock_(\d+)/(.+)", name)):
      blocks.setdefault(int(m.group(1)), {})[m.group(2)] = array
    elif (m := re.fullmatch(r"Transformer/encoderblock/(.+)", name)):  # stacked: one row per block
      for i, row in enumerate(array):
        blocks.setdefault(i, {})[m.group(1)] = row
    else:
      unknown.append(f"img/{name}")
  dim = out["pos_embed"].shape[-1] if "pos_embed" in out else None
  for i, parts in sorted(blocks.items()):
    for name, array in parts.items():
      found = _block(name, array, dim)
      if found is None:
        unknown.append(f"img/Transformer/encoderblock_{i}/{name}")
      elif found[0].startswith(("attn/query", "attn/key", "attn/value")):
        qkv.setdefault(i, {})[found[0]] = found[1]
      else:
        out[f"block{i + 1}/{found[0]}"] = found[1]
  for i, parts in qkv.items():
    for leaf in ("kernel", "bias"):
      got = [parts.get(f"attn/{p}/{leaf}") for p in ("query", "key", "value")]
      if all(g is not None for g in got):
        out[f"block{i + 1}/attn/qkv/{leaf}"] = np.concatenate(got, axis=-1)
  return {f"backbone/{k}": v for k, v in out.items()}, unknown
