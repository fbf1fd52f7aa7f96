"""Heads by name. A head owns its config keys, decoders, targets, loss, post-processing and metrics
(see segjax/heads/head.py); everything else asks the head the config names.

Adding a head: a file here with a subclass of Head and one line in HEADS; or, from code of your
own, `heads.register("name", MyHead())`. A config picks it with config.model.head="name" and holds
its keys: segjax.config.base_config("name"), or set_head(config, "name").
"""
from segjax.heads.eomt import EoMT
from segjax.heads.head import Head
from segjax.heads.mask_former import MaskFormer
from segjax.heads.panoptic_deeplab import PanopticDeepLab
from segjax.heads.semantic import Semantic
from segjax.models.backbones import BACKBONES
from segjax.models.segmenter import DTYPES, Segmenter, build, pick

HEADS = {"semantic": Semantic(), "panoptic_deeplab": PanopticDeepLab(), "mask_former": MaskFormer(),
         "eomt": EoMT(), "eomt_semantic": EoMT(semantic_only=True)}


def register(name, head):
  """Makes `head` (a Head) the one config.model.head=name picks."""
  if not isinstance(head, Head):
    raise TypeError(f"A head registered as '{name}' must be a segjax.heads.Head, not {type(head).__name__}.")
  HEADS[name] = head


def get(config):
  """The Head a config names (the whole config or its `model`); ValueError naming the choices."""
  return pick(HEADS, config.get("model", config).head, "head")


def build_segmenter(model_config, num_classes):
  """The model `config.model` names: its backbone and its head's decoders, by name, with their
  kwargs and dtype; a ValueError names the key at fault. Cheap (no parameters), so config
  validation builds one too."""
  dtype = pick(DTYPES, model_config.dtype, "dtype")
  backbone = build(BACKBONES, model_config, "backbone", dtype=dtype)
  return Segmenter(backbone=backbone, decoders=get(model_config).modules(model_config, num_classes, dtype))
