"""Losses: pure functions shared by heads, all in float32."""
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


def point_sample(maps, points):
  """Bilinear values of (h, w, K) maps at P points (P, 2) of (y, x) in [0, 1], zero outside, as
  PyTorch's grid_sample(align_corners=False) samples Mask2Former's masks: (P, K)."""
  h, w = maps.shape[:2]
  y, x = points[:, 0] * h - 0.5, points[:, 1] * w - 0.5
  y0, x0 = jnp.floor(y), jnp.floor(x)
  total = 0.0
  for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
    yy, xx = y0 + dy, x0 + dx
    weight = (1 - jnp.abs(y - yy)) * (1 - jnp.abs(x - xx)) * ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))
    value = maps[jnp.clip(yy, 0, h - 1).astype(jnp.int32), jnp.clip(xx, 0, w - 1).astype(jnp.int32)]
    total = total + weight[:, None] * value.astype(jnp.float32)
  return total


def label_at(labels, points):
  """The (H, W) label map's value at each of P points (P, 2) in [0, 1]: the pixel each falls in."""
  h, w = labels.shape
  return labels[jnp.clip(jnp.floor(points[:, 0] * h), 0, h - 1).astype(jnp.int32),
                jnp.clip(jnp.floor(points[:, 1] * w), 0, w - 1).astype(jnp.int32)]


def uncertain_points(key, logits_at, count, num_points, oversample_ratio, importance_sample_ratio):
  """Mask2Former's importance sampling: of oversample_ratio * num_points random points per mask,
  the importance_sample_ratio * num_points where its logit is nearest 0, plus fresh random points.
  `logits_at(points (count, S, 2)) -> (count, S)` evaluates the masks. Returns (count, num_points, 2)."""
  drawn, fresh = jax.random.split(key)
  sampled = max(int(num_points * oversample_ratio), 1)
  uncertain = min(int(importance_sample_ratio * num_points), num_points, sampled)
  candidates = jax.random.uniform(drawn, (count, sampled, 2))
  _, index = jax.lax.top_k(-jnp.abs(jax.lax.stop_gradient(logits_at(candidates))), uncertain)
  chosen = jnp.take_along_axis(candidates, index[..., None], axis=1)
  return jnp.concatenate([chosen, jax.random.uniform(fresh, (count, num_points - uncertain, 2))], axis=1)


def sigmoid_ce(logits, targets):
  """Mean sigmoid cross-entropy over the last axis."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets), axis=-1)


def dice(logits, targets):
  """1 - the soft Dice coefficient of sigmoid(logits) and targets over the last axis (smoothed by 1)."""
  p = jax.nn.sigmoid(logits)
  return 1 - (2 * jnp.sum(p * targets, -1) + 1) / (jnp.sum(p, -1) + jnp.sum(targets, -1) + 1)


def pairwise_mask_costs(logits, targets):
  """Sigmoid cross-entropy and dice of every prediction (Q, P) against every target (M, P) on the
  same points, each (Q, M), as matmuls rather than a (Q, M, P) tensor."""
  p = logits.shape[-1]
  ce = (jax.nn.softplus(-logits) @ targets.T + jax.nn.softplus(logits) @ (1 - targets).T) / p
  prob = jax.nn.sigmoid(logits)
  d = 1 - (2 * prob @ targets.T + 1) / (prob.sum(-1)[:, None] + targets.sum(-1)[None, :] + 1)
  return ce, d
