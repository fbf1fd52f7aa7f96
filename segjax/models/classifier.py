"""A backbone with the ImageNet head it was trained with, so converted weights can be checked end to
end (pooled features and logits against PyTorch's) and reused as a classifier."""
import flax.linen as nn
import jax.numpy as jnp

from segjax.models.backbones import BACKBONES
from segjax.models.layers import layer_norm


class PooledClassifier(nn.Module):
  """Global average pool, then LayerNorm (ConvNeXt's head) or nothing (ResNet's), then linear."""
  num_classes: int
  norm: bool = False

  @nn.compact
  def __call__(self, features):
    pooled = jnp.mean(features.astype(jnp.float32), axis=(1, 2))
    if self.norm:
      pooled = layer_norm(jnp.float32, "norm")(pooled)
    return pooled, nn.Dense(self.num_classes, name="fc")(pooled)


class ImageClassifier(nn.Module):
  """Variables `backbone/...` and `classifier/...`: the layout segjax.convert writes."""
  backbone: nn.Module
  num_classes: int = 1000
  head_norm: bool = False

  @nn.compact
  def __call__(self, images, train=False):
    features = self.backbone(images, train)
    pooled, logits = PooledClassifier(self.num_classes, self.head_norm, name="classifier")(features["out"])
    return {**features, "pooled": pooled, "logits": logits}


def imagenet_classifier(arch, num_classes=1000, output_stride=32):
  """The ImageNet classifier torchvision and timm build on backbone `arch` (ResNet or ConvNeXt)."""
  resnet = arch.startswith("resnet")
  backbone = BACKBONES[arch](**({"output_stride": output_stride} if resnet else {}))
  return ImageClassifier(backbone, num_classes=num_classes, head_norm=not resnet)
