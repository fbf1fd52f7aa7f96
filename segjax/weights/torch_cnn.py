"""torchvision's and timm's ResNets and ConvNeXts: their state dicts' names and layouts, and the
conversion of one to segjax's variables (python -m segjax.convert writes the file).

Every tensor is checked against the architecture by name and shape, both ways: a tensor the
architecture lacks is as much an error as one it needs and cannot find.
"""
import functools
import re

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from segjax.errors import UserError, some
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


def check_names(arch, source):
  """UserError for an --arch or --source this module does not convert."""
  if arch not in ARCHS:
    raise UserError(f"Unknown --arch '{arch}': choose one of {', '.join(ARCHS)}.")
  if source not in SOURCES:
    raise UserError(f"Unknown --source '{source}': choose torchvision or timm.")


def convert(state_dict, arch, source, where="the checkpoint"):
  """Nested Flax variables of `arch` from a PyTorch `state_dict` ({name: NumPy array}) in `source`'s
  naming; UserError naming the first tensor missing, left over or of the wrong shape."""
  check_names(arch, source)
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
