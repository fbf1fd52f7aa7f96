"""Panoptic-DeepLab: a semantic head and a centre/offset instance head (config.model.instance_head)
on the same features; instances are pixels grouped to their nearest predicted centre, fused with
the semantic map into a panoptic map."""
import functools

import jax
import jax.numpy as jnp

from segjax.errors import UserError
from segjax.heads import losses, postprocess
from segjax.heads.semantic import LOGITS, Semantic
from segjax.models.instance_heads import INSTANCE_HEADS
from segjax.models.segmenter import build


class CenterOffset(Semantic):
  label_keys = ("semantic", "instance")
  metrics = ("semantic", "instances", "panoptic")
  outputs = {LOGITS: "probabilities", "center": "dense", "offsets": "displacement"}

  def modules(self, model_config, num_classes, dtype):
    return super().modules(model_config, num_classes, dtype) + (
        ("instance_head", build(INSTANCE_HEADS, model_config, "instance_head", none=", or '' for none",
                                dtype=dtype), None),)

  def check(self, config):
    divisor, top_k = config.dataset.label_divisor, config.postprocess.top_k
    if divisor is not None and top_k >= divisor:  # panoptic id = class * divisor + slot + 1
      raise UserError(f"config.postprocess.top_k is {top_k}, not below config.dataset.label_divisor={divisor}: "
                      "instance ids would run into the next class's panoptic ids; give at most "
                      f"{divisor - 1} instances.")

  def targets(self, semantic, instance, config):
    from segjax.data import targets  # pylint: disable=g-import-not-at-top  (TensorFlow: tf.data only)
    return targets.center_offset_targets(semantic, instance, tuple(config.dataset.thing_classes),
                                         config.loss.center_sigma, config.dataset.ignore_label)

  def synthetic_targets(self, config, key, n, size):
    ones, (a, b) = jnp.ones((n, size, size)), jax.random.split(key)
    return {"center": jax.random.uniform(a, (n, size, size)), "center_weight": ones,
            "offsets": jax.random.normal(b, (n, size, size, 2)) * 8, "offset_weight": ones}

  def loss(self, outputs, batch, config, key=None):
    loss, parts = super().loss(outputs, batch, config, key)
    center, offset = losses.center_offset_losses(outputs["center"], outputs["offsets"], batch)
    return (loss + config.loss.center_weight * center + config.loss.offset_weight * offset,
            {**parts, "center_mse": center, "offset_l1": offset})

  def postprocess(self, outputs, config, sort=False):
    semantic = super().postprocess(outputs, config)["semantic"]
    things, pp = tuple(config.dataset.thing_classes), config.postprocess
    instances = jax.vmap(functools.partial(
        postprocess.instances, thing_classes=things, threshold=pp.center_threshold,
        nms_kernel=pp.nms_kernel, top_k=pp.top_k, sort=sort))(outputs[LOGITS], outputs["center"],
                                                            outputs["offsets"])
    panoptic = jax.vmap(functools.partial(
        postprocess.panoptic_fusion, thing_classes=things, min_stuff_area=pp.min_stuff_area,
        label_divisor=config.dataset.label_divisor))(semantic, instances)
    return {"semantic": semantic, "instances": instances, "panoptic": panoptic}

  def tiny(self, c):
    super().tiny(c)
    c.model.instance_head_kwargs.hidden = 8
    c.model.instance_head_kwargs.branch = 4
    c.loss.center_sigma = 2.0
    c.postprocess.nms_kernel = 3
    c.postprocess.min_stuff_area = 4
