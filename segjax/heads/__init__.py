"""Heads by name. A head owns its modules, targets, loss, post-processing and metrics (see
segjax/heads/head.py); everything else asks the head the config names.

Adding a head: a file here with a subclass of Head and one line in HEADS; or, from code of your
own, `heads.register("name", MyHead())`. A config picks it with config.model.head="name" (its
module's keyword arguments in config.model.head_kwargs). config.model.head="" keeps the dense heads:
config.model.semantic_head alone, or with config.model.instance_head.
"""
from segjax.heads.center_offset import CenterOffset
from segjax.heads.head import Head
from segjax.heads.mask_former import MaskFormer
from segjax.heads.semantic import Semantic
from segjax.models.backbones import BACKBONES
from segjax.models.instance_heads import INSTANCE_HEADS
from segjax.models.segmenter import DTYPES, Segmenter, build, pick

HEADS = {"semantic": Semantic(), "center_offset": CenterOffset(), "mask_former": MaskFormer()}


def register(name, head):
  """Makes `head` (a Head) the one config.model.head=name picks."""
  if not isinstance(head, Head):
    raise TypeError(f"A head registered as '{name}' must be a segjax.heads.Head, not {type(head).__name__}.")
  HEADS[name] = head


def name(model_config):
  """The registry name of the head `config.model` asks for; ValueError naming the key at fault."""
  if model_config.get("head"):
    pick(HEADS, model_config.head, "head")
    return model_config.head
  if model_config.get("instance_head"):  # a dense instance head beside the semantic head
    pick(INSTANCE_HEADS, model_config.instance_head, "instance_head", ", or '' for none")
    return "center_offset"
  return "semantic"


def get(config):
  """The Head of a config (the whole config or its `model`)."""
  return HEADS[name(config.get("model", config))]


def output_kinds():
  """How each output of every registered head averages over views: {output key: kind}."""
  return {key: kind for head in HEADS.values() for key, kind in head.outputs.items()}


def build_segmenter(model_config, num_classes):
  """The model `config.model` names: its backbone and its head's modules, by name, with their
  kwargs and dtype; a ValueError names the key at fault. Cheap (no parameters), so config
  validation builds one too."""
  dtype = pick(DTYPES, model_config.dtype, "dtype")
  backbone = build(BACKBONES, model_config, "backbone", dtype=dtype)
  head = HEADS[name(model_config)]
  return Segmenter(backbone=backbone, heads=head.modules(model_config, num_classes, dtype))
