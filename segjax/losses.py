"""Losses: pure functions (outputs, batch) -> (scalar loss, dict of parts), all in float32."""
import jax.numpy as jnp
import optax


def semantic_cross_entropy(logits, labels, ignore_label):
  """Mean pixel cross-entropy over the pixels whose label is not `ignore_label`."""
  valid = labels != ignore_label
  safe = jnp.where(valid, labels, 0)
  per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
  return jnp.sum(per_pixel * valid) / jnp.maximum(jnp.sum(valid), 1)


def segmentation_loss(outputs, batch, ignore_label):
  ce = semantic_cross_entropy(outputs["semantic_logits"], batch["semantic"], ignore_label)
  return ce, {"semantic_ce": ce}
