"""Losses: pure functions (outputs, batch) -> (scalar loss, dict of parts), all in float32."""
import jax
import jax.numpy as jnp
import optax


def semantic_cross_entropy(logits, labels, ignore_label, top_k=1.0):
  """Mean pixel cross-entropy over labelled pixels, or over each image's hardest `top_k` fraction.

  With top_k < 1 the k = int(top_k * H * W) hardest pixels of each image are averaged, ignored
  pixels taking part as zeros, so a mostly ignored image contributes a small loss. detectron2's and
  Panoptic-DeepLab's DeepLabCE also divide by k with ignored pixels as zeros, but take the top k over
  the whole batch; deeplab2 takes it per image, as here, but divides by the count of non-zero
  losses among the k, as TF DeepLab does over the batch.
  """
  valid = labels != ignore_label
  safe = jnp.where(valid, labels, 0)
  per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe) * valid
  if top_k >= 1.0:
    return jnp.sum(per_pixel) / jnp.maximum(jnp.sum(valid), 1)
  flat = per_pixel.reshape(per_pixel.shape[0], -1)
  k = max(int(top_k * flat.shape[1]), 1)
  hardest, _ = jax.lax.top_k(flat, k)
  return jnp.mean(hardest)


def _weighted_mean(values, weights):
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def segmentation_loss(outputs, batch, loss_config, ignore_label):
  """Semantic cross-entropy, plus centre MSE and offset L1 when the model has an instance head."""
  ce = semantic_cross_entropy(outputs["semantic_logits"], batch["semantic"], ignore_label,
                              loss_config.semantic_top_k)
  parts = {"semantic_ce": ce}
  loss = loss_config.semantic_weight * ce
  if "center" in outputs:
    center = _weighted_mean((outputs["center"].astype(jnp.float32) - batch["center"]) ** 2,
                            batch["center_weight"])
    offset = _weighted_mean(jnp.abs(outputs["offsets"].astype(jnp.float32) - batch["offsets"]).sum(-1),
                            batch["offset_weight"])
    parts.update(center_mse=center, offset_l1=offset)
    loss = loss + loss_config.center_weight * center + loss_config.offset_weight * offset
  return loss, parts
