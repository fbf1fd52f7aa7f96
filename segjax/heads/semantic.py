"""Semantic segmentation alone (config.model.head="semantic"): one decoder's per-pixel class
logits (config.model.decoder: seed, deeplabv3plus), cross-entropy, argmax."""
import jax.numpy as jnp

from segjax import checks
from segjax.heads import losses
from segjax.heads.head import Head
from segjax.models.segmenter import build
from segjax.models.semantic_decoders import SEMANTIC_DECODERS

LOGITS = "semantic_logits"


class Semantic(Head):
  outputs = {LOGITS: "probabilities"}
  defaults = {
      "model": {"decoder": "seed", "decoder_kwargs": {}},
      "loss": {"semantic_weight": 1.0,
               "semantic_top_k": 1.0},  # fraction of each image's hardest pixels in the cross-entropy; 1 = all
  }
  rules = {
      "loss.semantic_weight": checks.WEIGHT,
      "loss.semantic_top_k": checks.number_in(lambda v: 0 < v <= 1, "in (0, 1], the fraction of pixels kept (1: all)"),
  }

  def modules(self, model_config, num_classes, dtype):
    # The scope keeps its name from when decoders were called heads: checkpoints read as before.
    return (("semantic_head", build(SEMANTIC_DECODERS, model_config, "decoder", num_classes=num_classes,
                                    dtype=dtype), LOGITS),)

  def loss(self, outputs, batch, config, key=None):
    ce = losses.semantic_cross_entropy(outputs[LOGITS], batch["semantic"], config.dataset.ignore_label,
                                       config.loss.semantic_top_k)
    return config.loss.semantic_weight * ce, {"semantic_ce": ce, "pixel_acc": pixel_accuracy(
        outputs[LOGITS], batch["semantic"], config.dataset.ignore_label)}

  def postprocess(self, outputs, config, sort=False):
    return {"semantic": jnp.argmax(outputs[LOGITS], -1).astype(jnp.int32)}

  def tiny(self, c):
    if c.model.decoder == "deeplabv3plus":
      c.model.decoder_kwargs.aspp_features = 8
      c.model.decoder_kwargs.decoder_features = 8
      c.model.decoder_kwargs.low_features = 4


def pixel_accuracy(logits, labels, ignore_label):
  """Share of labelled pixels whose argmax is their label."""
  labelled = labels != ignore_label
  return ((jnp.argmax(logits, -1) == labels) & labelled).sum() / jnp.maximum(labelled.sum(), 1)
