"""A semantic head alone (config.model.semantic_head: seed, deeplabv3plus): per-pixel class logits,
cross-entropy, argmax."""
import jax.numpy as jnp

from segjax.heads import losses
from segjax.heads.head import Head
from segjax.models.segmenter import build
from segjax.models.semantic_heads import SEMANTIC_HEADS

LOGITS = "semantic_logits"


class Semantic(Head):
  outputs = {LOGITS: "probabilities"}

  def modules(self, model_config, num_classes, dtype):
    return (("semantic_head", build(SEMANTIC_HEADS, model_config, "semantic_head", num_classes=num_classes,
                                    dtype=dtype), LOGITS),)

  def loss(self, outputs, batch, config, key=None):
    ce = losses.semantic_cross_entropy(outputs[LOGITS], batch["semantic"], config.dataset.ignore_label,
                                       config.loss.semantic_top_k)
    return config.loss.semantic_weight * ce, {"semantic_ce": ce, "pixel_acc": pixel_accuracy(
        outputs[LOGITS], batch["semantic"], config.dataset.ignore_label)}

  def postprocess(self, outputs, config, sort=False):
    return {"semantic": jnp.argmax(outputs[LOGITS], -1).astype(jnp.int32)}

  def tiny(self, c):
    if c.model.semantic_head == "deeplabv3plus":
      c.model.semantic_head_kwargs.aspp_features = 8
      c.model.semantic_head_kwargs.decoder_features = 8
      c.model.semantic_head_kwargs.low_features = 4


def pixel_accuracy(logits, labels, ignore_label):
  """Share of labelled pixels whose argmax is their label."""
  labelled = labels != ignore_label
  return ((jnp.argmax(logits, -1) == labels) & labelled).sum() / jnp.maximum(labelled.sum(), 1)
