"""A PyTorch state dict read from a `.pth` file (needs PyTorch) or a `.safetensors` file (does not),
as {name: float32 NumPy array}."""
import os
import pickle

import ml_dtypes
import numpy as np
import safetensors

from segjax.errors import UserError, cause

# safetensors' dtype names; NumPy has no bfloat16, so safetensors.numpy cannot read it: ml_dtypes can.
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
           "I64": np.int64, "I32": np.int32}


def _read_safetensors(path):
  with open(path, "rb") as f:
    tensors = safetensors.deserialize(f.read())
  odd = sorted({t["dtype"] for _, t in tensors} - set(_DTYPES))
  if odd:
    raise UserError(f"'{path}' holds {', '.join(odd)} tensors, which are not weights segjax converts.")
  return {name: np.frombuffer(t["data"], _DTYPES[t["dtype"]]).reshape(t["shape"]) for name, t in tensors}


def _read_pth(path):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(f"Reading '{path}' needs PyTorch (pip install torch), or convert from the "
                    ".safetensors file of the same weights, which does not.") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:  # weights_only refuses anything but tensors and containers
    raise UserError(f"'{path}' holds Python objects besides tensors ({cause(e)}); load it in PyTorch "
                    "and torch.save its state dict (e.g. checkpoint['model']) alone.") from e
  for wrapper in ("state_dict", "model"):
    if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
      state = state[wrapper]
  if not isinstance(state, dict):
    raise UserError(f"'{path}' holds a {type(state).__name__}, not a state dict; torch.save "
                    "model.state_dict() instead of the model.")
  return {k: v.float().numpy() for k, v in state.items() if torch.is_tensor(v)}


def _check_is_a_checkpoint(path):
  """What a failed download leaves under a checkpoint's name, said as such rather than as whatever
  torch or safetensors make of it: a Git LFS pointer, a web page, text."""
  with open(path, "rb") as f:
    head = f.read(256)
  if head.startswith(b"version https://git-lfs"):
    raise UserError(f"'{path}' is a Git LFS pointer, not the checkpoint: fetch the file itself (git lfs pull "
                    "in its repository, or download it from the model's page).")
  if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
    raise UserError(f"'{path}' is a web page, not a checkpoint: the download saved a page (a login, an "
                    "error or a redirect); download the file itself.")
  if path.endswith(".safetensors"):
    return
  if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
    raise UserError(f"'{path}' is not a PyTorch checkpoint (neither the zip archive torch.save writes nor "
                    "a pickle): download it again.")


def read_state_dict(path):
  """{name: float32 NumPy array} of a `.safetensors` file (any float dtype, bfloat16 too) or a `.pth`
  state dict (which needs torch). A checkpoint that wraps its state dict ({"state_dict": ...},
  {"model": ...}) or was saved from DistributedDataParallel ("module." prefixes) is unwrapped."""
  if not os.path.isfile(path):
    raise UserError(f"Checkpoint '{path}' does not exist.")
  _check_is_a_checkpoint(path)
  try:
    state = _read_safetensors(path) if path.endswith(".safetensors") else _read_pth(path)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (torch and safetensors raise many types)
    raise UserError(f"Cannot read '{path}' as a PyTorch checkpoint ({cause(e)}); it is truncated or "
                    "not a checkpoint: download it again.") from e
  return {k.removeprefix("module."): np.asarray(v, np.float32) for k, v in state.items()}
