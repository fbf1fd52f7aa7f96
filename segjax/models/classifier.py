"""A backbone with the ImageNet head it was trained with, so converted weights can be checked end to
end (pooled features and logits against PyTorch's) and reused as a classifier."""
import flax.linen as nn
import jax.numpy as jnp


class PooledClassifier(nn.Module):
  """Global average pool, then LayerNorm (ConvNeXt's head) or nothing (ResNet's), then linear."""
  num_classes: int
  norm: bool = False

  @nn.compact
  def __call__(self, features):
    pooled = jnp.mean(features.astype(jnp.float32), axis=(1, 2))
    if self.norm:
      pooled = nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, name="norm")(pooled)
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
