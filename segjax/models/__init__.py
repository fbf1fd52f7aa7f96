"""Flax Linen models. Imports jax, flax and einops only: copy a file out and it still works."""
from segjax.models.backbones import BACKBONES, PixelNet, SeedNet
from segjax.models.classifier import ImageClassifier, imagenet_classifier
from segjax.models.eomt_decoder import EOMT_DECODERS, EoMTDecoder
from segjax.models.convnext import ConvNeXt, convnext_base, convnext_large, convnext_small, convnext_tiny
from segjax.models.instance_decoders import CenterOffsetDecoder, INSTANCE_DECODERS
from segjax.models.mask_former_decoder import MASK_DECODERS, MaskFormerDecoder
from segjax.models.resnet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152
from segjax.models.segmenter import Segmenter
from segjax.models.semantic_decoders import ASPP, DeepLabV3Plus, SEMANTIC_DECODERS, SeedDecoder
from segjax.models.vit import VITS, ViT
