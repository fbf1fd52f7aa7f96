"""EoMT (config.model.head="eomt"): mask classification by queries that run through a ViT's last
blocks (segjax/models/eomt_decoder.py), trained and post-processed as Mask2Former's queries are
(segjax/heads/mask_former.py: Hungarian matching, point-sampled mask losses on every prediction,
the same semantic, instance and panoptic inference), plus mask annealing. "eomt_semantic" is the
same model for semantic segmentation (EoMT's ADE20K and Cityscapes recipes): its targets are one
segment per class, so it needs no instance labels, and it is scored by mIoU alone.

Mask annealing (config.mask_annealing): in training, block j of the last L lets each query attend
only inside its predicted mask with probability p_j(step): 1 before `starts[j]`, 0 from `ends[j]`
on, (1 - progress)^power between (EoMT's poly 0.9), fractions of config.total_steps. Left empty,
block j anneals from (j + 1) / (L + 2) to (j + 2) / (L + 2) of training, one block after another,
as EoMT's COCO recipe does (L = 4: sixths 1-2, 2-3, 3-4, 4-5), so the last sixth trains as it
infers: without masks.
"""
import jax.numpy as jnp

from segjax import checks
from segjax.errors import UserError
from segjax.heads.mask_former import MaskFormer, segment_targets
from segjax.models.backbones import BACKBONES
from segjax.models.eomt_decoder import EOMT_DECODERS, EoMTDecoder
from segjax.models.segmenter import build
from segjax.models.vit import ViT


def _fractions(v):
  return isinstance(v, (tuple, list)) and all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in v)


class EoMT(MaskFormer):
  """`semantic_only`: segments per class, semantic labels alone, mIoU."""

  def __init__(self, semantic_only=False):
    self.semantic_only = semantic_only
    if semantic_only:
      self.label_keys, self.metrics = ("semantic",), ("semantic",)

  defaults = {
      "model": {"decoder": "eomt", "decoder_kwargs": {}},
      "loss": MaskFormer.defaults["loss"],  # semantic_*: decoder_kwargs.aux_semantic's, as mask_former's
      "postprocess": MaskFormer.defaults["postprocess"],
      "mask_annealing": {"starts": (), "ends": (), "power": 0.9},
  }
  rules = {
      **MaskFormer.rules,
      "mask_annealing.starts": (_fractions, "a tuple of fractions of config.total_steps in [0, 1], one per "
                                "masked block, or () for EoMT's"),
      "mask_annealing.ends": (_fractions, "a tuple of fractions of config.total_steps in [0, 1], one per "
                              "masked block, or () for EoMT's"),
      "mask_annealing.power": checks.number_in(lambda v: v > 0, "> 0"),
  }

  def modules(self, model_config, num_classes, dtype):
    return (("head", build(EOMT_DECODERS, model_config, "decoder", num_classes=num_classes, dtype=dtype), None),)

  def check(self, config):
    super().check(config)
    backbone = build(BACKBONES, config.model, "backbone")
    if not isinstance(backbone, ViT):
      raise UserError(f"config.model.backbone is '{config.model.backbone}', but EoMT runs its queries through "
                      "a ViT's last blocks: choose a vit_* backbone (segjax/models/vit.py).")
    blocks = self._blocks(config)
    if not 1 <= blocks <= backbone.depth:
      raise UserError(f"config.model.decoder_kwargs.blocks is {blocks}: give 1 to the backbone's {backbone.depth} "
                      "blocks (EoMT's L: 4 for ViT-L, 3 for S and B).")
    a = config.mask_annealing
    for name in ("starts", "ends"):
      if a[name] and len(a[name]) != blocks:
        raise UserError(f"config.mask_annealing.{name} has {len(a[name])} entries for {blocks} masked blocks "
                        "(config.model.decoder_kwargs.blocks): give one per block, or () for EoMT's.")
    starts, ends = self.windows(config)
    if any(e < s for s, e in zip(starts, ends)):
      raise UserError(f"config.mask_annealing ends {tuple(ends)} before it starts {tuple(starts)}: each block's "
                      "end must be at or after its start.")

  def targets(self, semantic, instance, config):
    if self.semantic_only:  # every class one segment, none a thing
      import tensorflow as tf  # pylint: disable=g-import-not-at-top  (tf.data only)
      return segment_targets(semantic, tf.zeros_like(semantic), (), config.dataset.ignore_label,
                             config.loss.max_segments)
    return super().targets(semantic, instance, config)

  def _blocks(self, config):
    return config.model.decoder_kwargs.get("blocks", EoMTDecoder.blocks)

  def _queries(self, config):
    return config.model.decoder_kwargs.get("num_queries", EoMTDecoder.num_queries)

  def windows(self, config):
    """Each masked block's (start, end) step of annealing."""
    blocks, a, total = self._blocks(config), config.mask_annealing, config.total_steps
    starts = a.starts or tuple((j + 1) / (blocks + 2) for j in range(blocks))
    ends = a.ends or tuple((j + 2) / (blocks + 2) for j in range(blocks))
    return [round(s * total) for s in starts], [round(e * total) for e in ends]

  def train_inputs(self, config, step):
    starts, ends = (jnp.asarray(w, jnp.float32) for w in self.windows(config))
    progress = jnp.clip((step - starts) / jnp.maximum(ends - starts, 1), 0.0, 1.0)
    probs = (1.0 - progress) ** config.mask_annealing.power
    return {"mask_probs": jnp.where(step >= ends, 0.0, probs)}

  def tiny(self, c):
    c.model.decoder_kwargs.update(num_queries=8, blocks=1)
    c.loss.num_points, c.loss.max_segments = 64, 8
