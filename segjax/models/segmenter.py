"""Joins a backbone and heads, chosen by name in the config."""
import dataclasses
import difflib
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from segjax.models.backbones import BACKBONES
from segjax.models.instance_heads import INSTANCE_HEADS
from segjax.models.semantic_heads import SEMANTIC_HEADS

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Segmenter(nn.Module):
  """One backbone, a semantic head and optionally an instance head, all reading the same features."""
  backbone: nn.Module
  semantic_head: nn.Module
  instance_head: Optional[nn.Module] = None

  def __call__(self, images, train=False):
    features = self.backbone(images, train)
    size = images.shape[1:3]
    outputs = {"semantic_logits": self.semantic_head(features, size, train).astype(jnp.float32)}
    if self.instance_head is not None:
      outputs.update({k: v.astype(jnp.float32) for k, v in self.instance_head(features, size, train).items()})
    return outputs


def _pick(table, name, what, none=""):
  if not isinstance(name, str) or name not in table:
    raise ValueError(f"Unknown {what} '{name}': choose one of {', '.join(sorted(table))}{none} "
                     f"(config.model.{what}).")
  return table[name]


def _build(table, model_config, what, none="", **given):
  """The module `config.model.<what>` names, with its `<what>_kwargs`, each checked by name."""
  factory = _pick(table, model_config[what], what, none)
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


def build_segmenter(model_config, num_classes):
  """Builds a Segmenter from `config.model` (backbone and heads by name, their kwargs, dtype); a
  ValueError names the key at fault. Cheap (no parameters), so config validation builds one too."""
  dtype = _pick(DTYPES, model_config.dtype, "dtype")
  backbone = _build(BACKBONES, model_config, "backbone", dtype=dtype)
  head = _build(SEMANTIC_HEADS, model_config, "semantic_head", num_classes=num_classes, dtype=dtype)
  instance_head = None
  if model_config.get("instance_head"):
    instance_head = _build(INSTANCE_HEADS, model_config, "instance_head", none=", or '' for none",
                           dtype=dtype)
  return Segmenter(backbone=backbone, semantic_head=head, instance_head=instance_head)
