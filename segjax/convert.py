"""PyTorch weights -> a segjax weights file: torchvision's and timm's ResNets and ConvNeXts.

python -m segjax.convert --arch=resnet50 --source=torchvision --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_torchvision_v1.safetensors

Reads a state dict from a `.pth` (needs PyTorch) or a `.safetensors` file (does not), checks every
tensor against the architecture by name and shape, and writes `backbone/...` and, when the
checkpoint has one, the ImageNet `classifier/...`. The names are matched both ways: a tensor the
architecture lacks is as much an error as one it needs and cannot find. Prints its one line;
-v 0 adds the libraries' log lines.
"""
import functools
import os
import pickle
import re
import sys

from absl import app, flags
from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import safetensors

from segjax import logs, weights
from segjax.errors import UserError, cause, some
from segjax.models import BACKBONES, imagenet_classifier

ARCHS = {name: ("convnext" if name.startswith("convnext") else "resnet")
         for name in BACKBONES if name.startswith(("resnet", "convnext"))}
SOURCES = ("torchvision", "timm")
_IGNORED = ("num_batches_tracked",)  # BatchNorm's step counter: no Flax counterpart, not needed


def _block(stage, block):
  return int(stage[len("stage"):]), int(block[len("block"):]) - 1


def _resnet_key(path, source):
  """torchvision and timm name ResNets alike: conv1/bn1, layer{s}.{b}.conv{k}/bn{k}, fc."""
  del source
  *module, leaf = path
  leaf = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
          "var": "running_var"}[leaf]
  match module:
    case ["backbone", "stem", layer]:
      name = {"conv": "conv1", "bn": "bn1"}[layer]
    case ["backbone", stage, block, "downsample", layer]:
      s, b = _block(stage, block)
      name = f"layer{s}.{b}.downsample.{0 if layer == 'conv' else 1}"
    case ["backbone", stage, block, conv, layer]:
      s, b = _block(stage, block)
      name = f"layer{s}.{b}.{layer}{conv[len('conv'):]}"
    case ["classifier", "fc"]:
      name = "fc"
    case _:
      raise KeyError(path)
  return f"{name}.{leaf}"


_CONVNEXT_LAYERS = {
    "timm": {"dwconv": "conv_dw", "norm": "norm", "fc1": "mlp.fc1", "fc2": "mlp.fc2"},
    "torchvision": {"dwconv": "block.0", "norm": "block.2", "fc1": "block.3", "fc2": "block.5"}}


def _convnext_key(path, source):
  """timm: stem.{0,1}, stages.{s}.downsample.{0,1}, stages.{s}.blocks.{b}.conv_dw..., head.{norm,fc};
  torchvision: features.{0,2,4,6} for the stem and downsampling, features.{1,3,5,7}.{b} for blocks,
  classifier.{0,2}."""
  tv = source == "torchvision"
  *module, leaf = path
  if leaf == "gamma":  # the layer scale, a parameter of the block itself
    s, b = _block(*module[1:])
    return f"features.{2 * s - 1}.{b}.layer_scale" if tv else f"stages.{s - 1}.blocks.{b}.gamma"
  leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}[leaf]
  match module:
    case ["backbone", "stem", layer]:
      name = f"{'features.0' if tv else 'stem'}.{0 if layer == 'conv' else 1}"
    case ["backbone", stage, "downsample", layer]:
      s = int(stage[len("stage"):])
      module = f"features.{2 * s - 2}" if tv else f"stages.{s - 1}.downsample"
      name = f"{module}.{1 if layer == 'conv' else 0}"
    case ["backbone", stage, block, layer]:
      s, b = _block(stage, block)
      module = f"features.{2 * s - 1}.{b}" if tv else f"stages.{s - 1}.blocks.{b}"
      name = f"{module}.{_CONVNEXT_LAYERS[source][layer]}"
    case ["classifier", layer]:
      name = {"norm": "classifier.0", "fc": "classifier.2"}[layer] if tv else f"head.{layer}"
    case _:
      raise KeyError(path)
  return f"{name}.{leaf}"


_KEYS = {"resnet": _resnet_key, "convnext": _convnext_key}


def _torch_shape(flax_shape, leaf, key):
  """The shape PyTorch stores a variable of Flax shape `flax_shape` in."""
  if leaf == "kernel" and len(flax_shape) == 4:  # (kh, kw, in, out) <- (out, in, kh, kw)
    return (flax_shape[3], flax_shape[2], flax_shape[0], flax_shape[1])
  if leaf == "kernel" and len(flax_shape) == 2:  # (in, out) <- (out, in)
    return (flax_shape[1], flax_shape[0])
  if key.endswith("layer_scale"):  # torchvision keeps it as (C, 1, 1)
    return (*flax_shape, 1, 1)
  return tuple(flax_shape)


def _to_flax(array, leaf):
  if leaf == "kernel" and array.ndim == 4:
    return array.transpose(2, 3, 1, 0)
  if leaf == "kernel" and array.ndim == 2:
    return array.T
  return array.reshape(-1) if array.ndim == 3 else array  # torchvision's (C, 1, 1) layer scale


@functools.cache
def _layout(arch, num_classes):
  """{flax path: (torch key for each source, flax shape)} of `arch` with a classifier of
  `num_classes` (0: none)."""
  family = ARCHS[arch]
  model = imagenet_classifier(arch, max(num_classes, 1))
  # Shapes only, and inside eval_shape: converting never starts an accelerator.
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  layout = {}
  for path, like in traverse_util.flatten_dict(shapes).items():
    if path[1] == "classifier" and not num_classes:
      continue
    layout[path] = ({s: _KEYS[family](path[1:], s) for s in SOURCES}, tuple(like.shape))
  return layout


def _classes(state_dict, arch, source):
  """The checkpoint's classifier width, or 0 when it has none (a backbone-only checkpoint)."""
  key = _KEYS[ARCHS[arch]](("classifier", "fc", "kernel"), source)
  return state_dict[key].shape[0] if key in state_dict else 0


def _guess(state_dict):
  """(arch, source) whose names and shapes fit the checkpoint's exactly, or None."""
  have = {k: tuple(v.shape) for k, v in state_dict.items() if not k.endswith(_IGNORED)}
  for arch, family in ARCHS.items():
    for source in SOURCES:
      if _KEYS[family](("backbone", "stem", "conv", "kernel"), source) not in state_dict:
        continue  # another family or naming: no need to build it
      layout = _layout(arch, _classes(state_dict, arch, source))
      if have == {keys[source]: _torch_shape(shape, path[-1], keys[source])
                  for path, (keys, shape) in layout.items()}:
        return arch, source
  return None


def _natural(key):
  """layer3.6 before layer3.10: the order PyTorch lists them in."""
  return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


def _check_names(arch, source):
  if arch not in ARCHS:
    raise UserError(f"Unknown --arch '{arch}': choose one of {', '.join(ARCHS)}.")
  if source not in SOURCES:
    raise UserError(f"Unknown --source '{source}': choose torchvision or timm.")


def convert(state_dict, arch, source, where="the checkpoint"):
  """Nested Flax variables of `arch` from a PyTorch `state_dict` ({name: NumPy array}) in `source`'s
  naming; UserError naming the first tensor missing, left over or of the wrong shape."""
  _check_names(arch, source)
  layout = _layout(arch, _classes(state_dict, arch, source))
  wanted = {keys[source]: (path, shape) for path, (keys, shape) in layout.items()}
  # Without its linear layer the ImageNet head is left out, its norm too (timm keeps head.norm at
  # num_classes=0); a bias of that missing layer is still a tensor left over.
  head_norm = {keys[source] for path, (keys, _) in _layout(arch, 1).items()
               if path[1:3] == ("classifier", "norm")}
  names = [k for k in state_dict if not k.endswith(_IGNORED) and (k in wanted or k not in head_norm)]
  missing = sorted((k for k in wanted if k not in state_dict), key=_natural)
  extra = sorted((k for k in names if k not in wanted), key=_natural)
  if missing or extra:
    guess = _guess(state_dict)
    hint = (f"it looks like {guess[1]}'s {guess[0]}: pass --arch={guess[0]} --source={guess[1]}"
            if guess else "check --arch and --source")
    problem = f"lacks {some(missing, 'tensors')}" if missing else ""
    if extra:
      problem += (" and " if problem else "") + f"has {some(extra, 'tensors')} that {arch} does not"
    raise UserError(f"{where} is not {source}'s {arch}: it {problem}; {hint}.")
  flat = {}
  for key, (path, shape) in wanted.items():
    array = np.asarray(state_dict[key], np.float32)
    expected = _torch_shape(shape, path[-1], key)
    if tuple(array.shape) != expected:
      guess = _guess(state_dict)
      hint = f"pass --arch={guess[0]}" if guess else "check --arch"
      raise UserError(f"'{key}' in {where} has shape {tuple(array.shape)} where {source}'s {arch} has "
                      f"{expected}; {hint}.")
    flat[path] = _to_flax(array, path[-1])
  return traverse_util.unflatten_dict(flat)


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


def read_state_dict(path):
  """{name: float32 NumPy array} of a `.safetensors` file (any float dtype, bfloat16 too) or a `.pth`
  state dict (which needs torch). A checkpoint that wraps its state dict ({"state_dict": ...},
  {"model": ...}) or was saved from DistributedDataParallel ("module." prefixes) is unwrapped."""
  if not os.path.isfile(path):
    raise UserError(f"Checkpoint '{path}' does not exist.")
  try:
    state = _read_safetensors(path) if path.endswith(".safetensors") else _read_pth(path)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (torch and safetensors raise many types)
    raise UserError(f"Cannot read '{path}' as a PyTorch checkpoint ({cause(e)}); it is truncated or "
                    "not a checkpoint: download it again.") from e
  return {k.removeprefix("module."): np.asarray(v, np.float32) for k, v in state.items()}


def convert_file(in_path, out_path, arch, source):
  """Converts `in_path` to `out_path`, which must not exist yet; returns a one-line summary."""
  _check_names(arch, source)
  weights.check_extension(out_path, "--out")
  if os.path.exists(out_path):
    raise UserError(f"--out '{out_path}' exists; remove it or choose another file (nothing is overwritten).")
  variables = convert(read_state_dict(in_path), arch, source, where=f"'{in_path}'")
  weights.save(out_path, variables, {"arch": arch, "source": source,
                                     "converted_from": os.path.basename(in_path)})
  count = sum(x.size for x in jax.tree.leaves(variables))
  parts = " and ".join(sorted(variables["params"]))
  return f"Wrote {out_path}: {source}'s {arch}, {parts}, {count:,} numbers."


def _define_flags():
  """Only when run as a program: predict and benchmark define flags of the same names."""
  flags.DEFINE_string("arch", None, "Architecture: resnet18..152, convnext_tiny..large.")
  flags.DEFINE_enum("source", "torchvision", list(SOURCES), "Whose naming the checkpoint uses.")
  flags.DEFINE_string("in", None, "PyTorch checkpoint: .pth state dict or .safetensors.")
  flags.DEFINE_string("out", None, "segjax weights file to write: .safetensors or .npz.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logs.for_reading()
  f = flags.FLAGS
  try:
    for name in ("arch", "in", "out"):
      if not f[name].value:
        raise UserError(f"--{name} is required.")
    jax.config.update("jax_platforms", "cpu")  # no accelerator is needed, nor taken from a run
    print(convert_file(os.path.expanduser(f["in"].value), os.path.expanduser(f.out), f.arch, f.source))
  except UserError as e:
    sys.exit(f"segjax.convert: error: {e}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
