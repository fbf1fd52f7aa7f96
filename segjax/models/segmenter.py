"""Joins a backbone and decoders; picks and builds modules by name, checking their keyword arguments
(the registry helpers that segjax.heads builds the model of a config with)."""
import dataclasses
import difflib
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Segmenter(nn.Module):
  """One backbone and the decoders of one head (segjax.heads), all reading the same features.

  `decoders` holds (variable scope, module, output key or None): each module is a top-level scope
  of its own name (`semantic_head`, `instance_head`, ...), maps (features, size, train) to its
  outputs at input resolution and gives a dict, or one array that takes the output key. Outputs
  are float32.

  A decoder whose class sets `inside_backbone = True` runs inside the backbone (EoMT's queries go
  through a ViT's last blocks): it is given (backbone, images, train) instead and calls the
  backbone's parts itself; the backbone's variables stay the backbone's. Keyword arguments of a
  call (a head's `train_inputs`) go to every decoder.
  """
  backbone: nn.Module
  decoders: Sequence[Tuple[str, nn.Module, Optional[str]]]

  @nn.compact
  def __call__(self, images, train=False, **inputs):
    inside = [getattr(module, "inside_backbone", False) for _, module, _ in self.decoders]
    features = None if inside and all(inside) else self.backbone(images, train)
    outputs = {}
    for (name, module, key), runs_backbone in zip(self.decoders, inside):
      module = module.clone(name=name, parent=self)
      if runs_backbone:
        out = module(self.backbone, images, train, **inputs)
      else:
        out = module(features, images.shape[1:3], train, **inputs)
      outputs.update(out if key is None else {key: out})
    return {k: v.astype(jnp.float32) for k, v in outputs.items()}


def pick(table, name, what):
  if not isinstance(name, str) or name not in table:
    raise ValueError(f"Unknown {what} '{name}': choose one of {', '.join(sorted(table))} "
                     f"(config.model.{what}).")
  return table[name]


def build(table, model_config, what, **given):
  """The module `config.model.<what>` names, with its `<what>_kwargs`, each checked by name."""
  factory = pick(table, model_config[what], what)
  kwargs = dict(model_config.get(f"{what}_kwargs", {}))
  module = getattr(factory, "func", factory)  # a partial of a Flax module, or the module
  bound = set(given) | {"parent", "name"}  # a partial's own keywords may be overridden
  takes = [f.name for f in dataclasses.fields(module) if f.name not in bound]
  for key in kwargs:
    if key not in takes:
      close = difflib.get_close_matches(key, takes, n=1)
      if close:
        raise ValueError(f"config.model.{what}_kwargs has '{key}', which {model_config[what]} does not "
                         f"take (it takes {', '.join(takes)}); did you mean '{close[0]}'?")
      raise ValueError(f"config.model.{what}_kwargs has '{key}', which {model_config[what]} does not "
                       f"take; it takes {', '.join(takes) or 'nothing'}.")
  try:
    return factory(**given, **kwargs)
  except ValueError as e:  # a value the module checks at construction (ResNet's output_stride)
    raise ValueError(f"{str(e).rstrip('.')} (config.model.{what}_kwargs).") from e
