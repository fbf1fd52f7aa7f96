"""Predictions made from the ground truth with known flaws, for scoring tests with figures that are
neither 0 nor 1.

A tiny model trained for seconds scores mask AP 0, which any scoring bug leaves at 0. These are the
dense outputs a perfect model would give, spoiled twice: instance 2 of every image is painted with
the next thing class, and the centre of instance 4 is missing, so its pixels join a neighbour. The
real post-processing and evaluator turn them into mIoU, mask AP and PQ well inside (0, 1).
"""
import functools
import os

import jax
import jax.numpy as jnp

from segjax import data
from segjax.engine import inference, parallel, train
from segjax.engine.evaluator import evaluate
from segjax.engine.metrics_writer import MetricsWriter

CLASS_NAMES = ["background", "disk", "square", "triangle"]

_IDS = 33  # instance ids 0..32


def dense_outputs(semantic, instance, *, num_classes, ignore_label):
  """One image's semantic logits (H, W, C), centre heatmap (H, W) and offsets (H, W, 2)."""
  h, w = semantic.shape
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  instance = jnp.where(semantic == ignore_label, 0, instance)  # padding: none
  # Instance ids (Cityscapes' 26001, ...) by rank: 0 stays 0, the others become 1, 2, ...
  ranks = jnp.unique(jnp.concatenate([jnp.zeros(1, instance.dtype), instance.ravel()]), size=_IDS,
                     fill_value=jnp.iinfo(instance.dtype).max)
  ids = jnp.searchsorted(ranks, instance)
  labels = jnp.where(semantic == ignore_label, 0, semantic)
  labels = jnp.where(ids == 2, labels % (num_classes - 1) + 1, labels)  # thing class c -> c + 1
  count = jax.ops.segment_sum(jnp.ones(h * w), ids.ravel(), _IDS)
  cy = jnp.round(jax.ops.segment_sum(yy.ravel(), ids.ravel(), _IDS) / jnp.maximum(count, 1))
  cx = jnp.round(jax.ops.segment_sum(xx.ravel(), ids.ravel(), _IDS) / jnp.maximum(count, 1))
  n = jnp.arange(_IDS)
  kept = (count > 0) & (n > 0) & (n != 4)
  center = jnp.zeros((h, w)).at[cy.astype(jnp.int32), cx.astype(jnp.int32)].max(kept.astype(jnp.float32))
  offsets = jnp.stack([cy[ids] - yy, cx[ids] - xx], -1) * (ids > 0)[..., None]
  return {"semantic_logits": 10.0 * jax.nn.one_hot(labels, num_classes), "center": center,
          "offsets": offsets}


def truth_outputs(semantic, instance, *, thing_classes, ignore_label, label_divisor):
  """One image's post-processed outputs equal to its ground truth: the instance-id map (instances
  numbered 1, 2, ...), their classes, score 1, and the panoptic map, where crowd regions are void
  (no model can mark a crowd)."""
  things = jnp.isin(semantic, jnp.asarray(thing_classes))
  inst = jnp.where(things, instance, 0)
  top = jnp.iinfo(inst.dtype).max
  ranks = jnp.unique(jnp.concatenate([jnp.zeros(1, inst.dtype), inst.ravel()]), size=_IDS, fill_value=top)
  slots = jnp.searchsorted(ranks, inst).astype(jnp.int32)
  classes = jax.ops.segment_max(semantic.ravel(), slots.ravel(), _IDS)[1:].astype(jnp.int32)
  panoptic = jnp.where(slots > 0, semantic * label_divisor + slots,
                       jnp.where(things | (semantic == ignore_label), -1, semantic * label_divisor))
  return {"instance_map": slots, "valid": ranks[1:] != top, "classes": classes,
          "scores": jnp.ones(_IDS - 1)}, panoptic.astype(jnp.int32)


def eval_fn(config, mesh, flaws=True):
  """A stand-in for train's jitted eval step: the same batch in, the same outputs out; without
  `flaws` the outputs are the ground truth itself."""
  ds = config.dataset

  def step(batch):
    has_instances = "instance" in batch
    instance = batch["instance"] if has_instances else jnp.zeros_like(batch["semantic"])
    outputs = jax.vmap(functools.partial(dense_outputs, num_classes=ds.num_classes,
                                         ignore_label=ds.ignore_label))(batch["semantic"], instance)
    if not flaws:
      # The head post-processes the centres too; the instances are replaced by the truth below.
      outputs = {**outputs, "semantic_logits": 10.0 * jax.nn.one_hot(batch["semantic"], ds.num_classes)}
    if not has_instances:  # a semantic model
      outputs = {"semantic_logits": outputs["semantic_logits"]}
    result = train.scored(inference.postprocess_outputs(outputs, config), batch, config)
    if not flaws and has_instances:
      result["instances"], result["panoptic"] = jax.vmap(functools.partial(
          truth_outputs, thing_classes=tuple(ds.thing_classes), ignore_label=ds.ignore_label,
          label_divisor=ds.label_divisor))(batch["semantic"], instance)
    return result

  jitted = jax.jit(step, in_shardings=(parallel.batch_sharding(mesh),))
  return lambda state, batch: jitted(batch)


def score(config, workdir, edit=None, official_files=False, flaws=True, class_names=CLASS_NAMES):
  """The evaluator's figures for these predictions on config's eval split, over every device of
  every process (process 0's are the ones to read); metrics and COCO files go to `workdir`.
  `edit`, when given, changes each batch's eval outputs (a dict) before the evaluator sees them."""
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.make_mesh()
  step = eval_fn(config, mesh, flaws)
  writer = MetricsWriter(workdir)
  try:
    return evaluate(step if edit is None else lambda state, batch: edit(dict(step(state, batch))), None,
                    data.EvalData(config, parallel.host_batch_size(config.eval_batch_size)), mesh,
                    config, class_names, 1, workdir, writer, official_files=official_files)
  finally:
    writer.close()
