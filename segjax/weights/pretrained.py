"""Starting a run from converted weights (`config.model.init_from`): checked before any work,
loaded after init, on every process alike.

Each process reads the file itself, so the file must be the same everywhere: a copy that differs
(say ~/.cache on each host) or is missing on one host stops every process with a sentence rather
than training replicas that silently disagree or leaving the others at a collective.
"""
import hashlib
import json
import os

from absl import logging
from flax import traverse_util
import jax
import numpy as np

from segjax import weights
from segjax.engine import parallel
from segjax.errors import UserError
from segjax.models.backbones import BACKBONES
from segjax.models.segmenter import build

_CONVERT = "python -m segjax.convert --arch={arch} --in={src} --out={out}"


def _problem(model_config):
  """What makes this process's init_from file unusable, as a sentence, or None."""
  path, arch = model_config.init_from.path, model_config.backbone
  full = os.path.expanduser(path)
  if not os.path.exists(full):
    return (f"config.model.init_from.path '{path}' does not exist. Convert the checkpoint the config's "
            f"docstring names with {_CONVERT.format(arch=arch, src='CHECKPOINT', out=path)} (add "
            "--source=timm for timm's), or pass --config.model.init_from.path= to start from random "
            "weights.")
  try:
    meta = {} if not full.endswith(weights.EXTENSIONS) else weights.metadata(
        full, "config.model.init_from.path file")
  except UserError as e:
    return str(e)
  if meta.get("format") != weights.FORMAT:
    return (f"config.model.init_from.path '{path}' is not a segjax weights file; if it is a PyTorch "
            f"checkpoint, convert it first: {_CONVERT.format(arch=arch, src=path, out='FILE.safetensors')}.")
  if "backbone" in model_config.init_from.parts and meta.get("arch", arch) != arch:
    return (f"config.model.init_from.path '{path}' holds {meta['arch']} weights but "
            f"config.model.backbone is {arch}; convert weights for it.")
  if "backbone" in model_config.init_from.parts:
    return _differs(path, meta, build(BACKBONES, model_config, "backbone"))
  return None


def _differs(path, meta, backbone):
  """The sentence for a backbone built otherwise than the file's (a ViT's standardisation, patch
  size or position grid, as segjax.convert recorded them), or None."""
  wanted = {**json.loads(meta.get("backbone_kwargs", "{}")),
            **{k: json.loads(meta[k]) for k in ("mean", "std") if k in meta}}
  differ = {k: v for k, v in wanted.items() if list(np.ravel(getattr(backbone, k, v))) != list(np.ravel(v))}
  if not differ:
    return None
  given = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}" for k, v in differ.items())
  return (f"config.model.init_from.path '{path}' holds weights of a backbone with {given}, which "
          f"config.model.backbone_kwargs does not give (a model standardising with other statistics, or "
          f"of another patch size or position grid, would compute something else): set them in "
          f"config.model.backbone_kwargs.")


def check(model_config):
  """UserError on every process when the file is unusable on any (each names its own reason)."""
  problem = _problem(model_config)
  bad = np.flatnonzero(parallel.from_every_process(np.array(problem is not None)))
  if problem:
    raise UserError(problem)
  if bad.size:
    raise UserError(f"config.model.init_from.path '{model_config.init_from.path}' cannot be used on "
                    f"process(es) {', '.join(map(str, bad))}; their logs say why.")


def load(variables, model_config):
  """`variables` (global arrays) with `model_config.init_from`'s in place of the initial ones, each
  placed as the one it replaces."""
  check(model_config)
  spec = model_config.init_from
  loaded, meta = weights.load_parts(variables, os.path.expanduser(spec.path), tuple(spec.parts))
  digest = hashlib.sha256()
  for key in sorted(loaded):
    digest.update(np.ascontiguousarray(loaded[key]).tobytes())
  digests = parallel.from_every_process(np.frombuffer(digest.digest()[:16], np.int32))
  differ = [i for i, d in enumerate(digests) if not np.array_equal(d, digests[0])]
  if differ:
    raise UserError(f"config.model.init_from.path '{spec.path}' holds other weights on process(es) "
                    f"{', '.join(map(str, differ))} than on process 0; give every host the same file "
                    "(a path they all see, as for --workdir).")
  flat = traverse_util.flatten_dict(variables, keep_empty_nodes=True)
  for key, array in loaded.items():
    flat[key] = jax.make_array_from_callback(flat[key].shape, flat[key].sharding, lambda i, a=array: a[i])
  logging.info("Starting %s from %s (%s's %s, converted from %s).", " and ".join(spec.parts), spec.path,
               meta.get("source"), meta.get("arch"), meta.get("converted_from"))
  return traverse_util.unflatten_dict(flat)
