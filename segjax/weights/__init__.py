"""Weights files: Flax variables as `.safetensors` or `.npz`, what segjax.convert writes and
`config.model.init_from` loads.

Arrays only, keyed by their Flax path (`params/backbone/stem/conv/kernel`): loading runs no code
from the file (no pickle) and needs no PyTorch. Arrays are matched by module path and name, not by
collection, so one file loads into a BatchNorm (scale in `params`) or a FrozenBatchNorm (scale in
`batch_stats`).
"""
import json
import os

from flax import traverse_util
import numpy as np

from segjax.errors import UserError, cause, some

FORMAT = "segjax-weights-1"
EXTENSIONS = (".safetensors", ".npz")
_META = "__metadata__"  # the .npz entry holding the metadata as a JSON string


def check_extension(path, what):
  if not path.endswith(EXTENSIONS):
    raise UserError(f"{what} '{path}' must end in .safetensors or .npz.")


def save(path, variables, metadata):
  """Writes nested `variables` to `path` whole or not at all (a temporary file, then a rename), the
  same bytes for the same input, readable as any file this process writes (umask)."""
  check_extension(path, "The weights file")
  flat = {"/".join(k): np.ascontiguousarray(v) for k, v in traverse_util.flatten_dict(variables).items()}
  metadata = {"format": FORMAT, **{k: str(v) for k, v in metadata.items()}}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    if path.endswith(".safetensors"):
      from safetensors.numpy import save as serialize  # pylint: disable=g-import-not-at-top
      with open(tmp, "wb") as f:  # not safetensors' save_file, which makes the file 0600
        f.write(_sorted_header(serialize(flat, metadata=metadata)))
    else:
      with open(tmp, "wb") as f:
        np.savez(f, **flat, **{_META: np.array(json.dumps(metadata))})
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _sorted_header(data):
  """A safetensors file's bytes with its JSON header's keys sorted: safetensors writes the metadata
  from a hash map, in an order that changes from run to run, so hosts' checksums of one conversion
  would differ. The format allows any key order and pads the header with spaces to 8 bytes."""
  size = int.from_bytes(data[:8], "little")
  header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":")).encode()
  header += b" " * (-len(header) % 8)
  return len(header).to_bytes(8, "little") + header + data[8 + size:]


def _unreadable(path, what, e):
  return UserError(f"Cannot read {what.lower()} '{path}' ({cause(e)}); it is damaged or truncated: "
                   "write it again with python -m segjax.convert.")


def metadata(path, what="Weights file"):
  """The metadata of a `.safetensors` or `.npz` file, read without its arrays ({} if it has none)."""
  try:
    if path.endswith(".safetensors"):
      from safetensors import safe_open  # pylint: disable=g-import-not-at-top
      with safe_open(path, framework="numpy") as f:
        return f.metadata() or {}
    with np.load(path, allow_pickle=False) as f:
      return json.loads(str(f[_META])) if _META in f.files else {}
  except Exception as e:  # pylint: disable=broad-except  (each reader raises its own types)
    raise _unreadable(path, what, e) from e


def load(path, what="Weights file"):
  """({"params/backbone/...": array}, metadata) of a file that `save` wrote."""
  path = os.path.expanduser(path)
  check_extension(path, what)
  if not os.path.isfile(path):
    raise UserError(f"{what} '{path}' does not exist.")
  try:
    if path.endswith(".safetensors"):
      from safetensors import safe_open  # pylint: disable=g-import-not-at-top
      with safe_open(path, framework="numpy") as f:
        metadata = f.metadata() or {}
        flat = {k: f.get_tensor(k) for k in f.keys()}
    else:
      with np.load(path, allow_pickle=False) as f:
        flat = {k: f[k] for k in f.files}
      metadata = json.loads(str(flat.pop(_META))) if _META in flat else {}
  except Exception as e:  # pylint: disable=broad-except  (each reader raises its own types)
    raise _unreadable(path, what, e) from e
  if metadata.get("format") != FORMAT:
    raise UserError(f"{what} '{path}' was not written by segjax (no '{FORMAT}' format tag); "
                    "convert PyTorch weights with python -m segjax.convert first.")
  return flat, metadata


def load_parts(variables, path, parts, what="config.model.init_from.path"):
  """The arrays of `path` for every variable of `variables` (nested, any collections) below the
  top-level modules `parts`: {(collection, module, ..., name): array}.

  Each such variable must be in the file with its shape, and the file may hold nothing else below
  those modules (a sign of another architecture); it may hold other modules (an ImageNet classifier).
  """
  if not parts:
    raise UserError("config.model.init_from.parts is empty; name the modules to load, e.g. (\"backbone\",).")
  flat, metadata = load(path, f"{what} file")
  by_path = {k.split("/", 1)[1]: v for k, v in flat.items() if "/" in k}
  wanted = {k: v for k, v in traverse_util.flatten_dict(variables).items() if k[1] in parts}
  modules = sorted({k[1] for k in traverse_util.flatten_dict(variables)})
  for part in parts:
    if part not in modules:
      raise UserError(f"config.model.init_from.parts names '{part}', which this model does not have; "
                      f"choose from {', '.join(modules)}.")
  missing = [k for k in wanted if "/".join(k[1:]) not in by_path]
  made = " ".join(f"{metadata[k]}{end}" for k, end in (("source", "'s"), ("arch", "")) if k in metadata)
  source = f"'{path}'" + (f" ({made})" if made else "")
  if missing:
    raise UserError(f"{source} lacks {some(['/'.join(k[1:]) for k in missing], 'variables')} of this "
                    "model; convert weights of the architecture config.model names.")
  extra = sorted(set(k for k in by_path if k.split("/")[0] in parts) -
                 {"/".join(k[1:]) for k in wanted})
  if extra:
    raise UserError(f"{source} has {some(extra, 'variables')} that this model does not; convert "
                    "weights of the architecture config.model names.")
  loaded = {}
  for key, like in wanted.items():
    array = by_path["/".join(key[1:])]
    if tuple(array.shape) != tuple(like.shape):
      raise UserError(f"{source} holds {'/'.join(key[1:])} with shape {tuple(array.shape)} where this "
                      f"model needs {tuple(like.shape)}; convert weights of the architecture "
                      "config.model names.")
    loaded[key] = array.astype(like.dtype)
  return loaded, metadata

