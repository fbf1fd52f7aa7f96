"""Flax Linen models. Imports jax, flax and einops only: copy a file out and it still works."""
from segjax.models.backbones import BACKBONES, ResNet, SeedNet, resnet18, resnet50
from segjax.models.instance_heads import CenterOffsetHead, INSTANCE_HEADS
from segjax.models.segmenter import Segmenter, build_segmenter
from segjax.models.semantic_heads import ASPP, DeepLabV3Plus, SEMANTIC_HEADS, SeedHead
