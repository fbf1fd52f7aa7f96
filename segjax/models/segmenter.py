"""Joins a backbone and heads, chosen by name in the config."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from segjax.models.backbones import BACKBONES
from segjax.models.semantic_heads import SEMANTIC_HEADS

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Segmenter(nn.Module):
  backbone: nn.Module
  semantic_head: nn.Module

  def __call__(self, images, train=False):
    features = self.backbone(images, train)
    logits = self.semantic_head(features, images.shape[1:3], train)
    return {"semantic_logits": logits.astype(jnp.float32)}


def _pick(table, name, what):
  if name not in table:
    raise ValueError(f"Unknown {what} '{name}': choose one of {', '.join(sorted(table))} "
                     f"(config.model.{what}).")
  return table[name]


def build_segmenter(model_config, num_classes):
  """Builds a Segmenter from `config.model` (backbone, semantic_head, their kwargs, dtype)."""
  dtype = _pick(DTYPES, model_config.dtype, "dtype")
  backbone = _pick(BACKBONES, model_config.backbone, "backbone")(
      dtype=dtype, **model_config.get("backbone_kwargs", {}))
  head = _pick(SEMANTIC_HEADS, model_config.semantic_head, "semantic_head")(
      num_classes=num_classes, dtype=dtype, **model_config.get("semantic_head_kwargs", {}))
  return Segmenter(backbone=backbone, semantic_head=head)
