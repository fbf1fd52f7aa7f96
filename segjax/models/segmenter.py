"""Joins a backbone and heads, chosen by name in the config."""
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


def _pick(table, name, what):
  if name not in table:
    raise ValueError(f"Unknown {what} '{name}': choose one of {', '.join(sorted(table))} "
                     f"(config.model.{what}).")
  return table[name]


def build_segmenter(model_config, num_classes):
  """Builds a Segmenter from `config.model` (backbone and heads by name, their kwargs, dtype)."""
  dtype = _pick(DTYPES, model_config.dtype, "dtype")
  backbone = _pick(BACKBONES, model_config.backbone, "backbone")(
      dtype=dtype, **model_config.get("backbone_kwargs", {}))
  head = _pick(SEMANTIC_HEADS, model_config.semantic_head, "semantic_head")(
      num_classes=num_classes, dtype=dtype, **model_config.get("semantic_head_kwargs", {}))
  instance_head = None
  if model_config.get("instance_head"):
    instance_head = _pick(INSTANCE_HEADS, model_config.instance_head, "instance_head")(
        dtype=dtype, **model_config.get("instance_head_kwargs", {}))
  return Segmenter(backbone=backbone, semantic_head=head, instance_head=instance_head)
