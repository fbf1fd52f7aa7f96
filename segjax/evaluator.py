"""Runs the eval step over the eval split and turns what it returns into metrics and pictures."""
import os

from absl import logging
import jax
import numpy as np

from segjax import parallel, visualize
from segjax.evaluation import CocoMaskEvaluator, PanopticQuality, panoptic_from_labels, semantic_metrics


def evaluate(eval_fn, state, eval_data, mesh, config, class_names, step, workdir, writer):
  """mIoU and pixel accuracy; with an instance head also COCO mask AP and PQ.

  Appends one line to metrics.jsonl and, for instances, writes the COCO ground truth and results it
  scored under WORKDIR/eval/<step>/. Every process must call it; only process 0 scores instances
  and writes, and its return value is the one to read.
  """
  ds, pp = config.dataset, config.postprocess
  main = jax.process_index() == 0  # every process computes and gathers; process 0 scores and writes
  confusions, pictures, coco, pq = [], None, None, None
  for batch in eval_data:
    inputs = parallel.to_global(batch, mesh)
    out = eval_fn(state, inputs)
    confusions.append(out["confusion"])  # fetched after the loop: no wait for each batch
    if pictures is None and config.num_summary_images:
      n = config.num_summary_images
      seen = parallel.gather({"image": inputs["image"], "truth": inputs["semantic"], "pred": out["semantic"]})
      pictures = (seen["image"][:n], seen["truth"][:n], seen["pred"][:n])
    if "instances" in out:
      # Each host holds only its slice of the eval data: gather truth and predictions of the
      # whole global batch, in the same row order, before scoring.
      truth = parallel.gather({k: inputs[k] for k in ("semantic", "instance", "valid", "image_id")})
      pred = parallel.gather({"instances": out["instances"], "panoptic": out["panoptic"]})
      if not main:
        continue
      if coco is None:
        coco = CocoMaskEvaluator(class_names, ds.thing_classes)
        pq = PanopticQuality(ds.num_classes, ds.thing_classes, pp.label_divisor)
      for i in np.nonzero(truth["valid"])[0]:
        coco.add(truth["image_id"][i], truth["semantic"][i], truth["instance"][i],
                 {k: v[i] for k, v in pred["instances"].items()})
        pq.add(panoptic_from_labels(truth["semantic"][i], truth["instance"][i], ds.thing_classes,
                                    ds.ignore_label, pp.label_divisor), pred["panoptic"][i])
  # Summed in int64: one batch fits int32, a Cityscapes-size split (> 2^31 pixels) does not.
  confusion = np.sum([np.asarray(c, np.int64) for c in jax.device_get(confusions)], axis=0)
  metrics = semantic_metrics(confusion, class_names)
  scalars = {"miou": metrics["miou"], "pixel_acc": metrics["pixel_acc"]}
  if coco is not None:
    scalars.update(coco.result(os.path.join(workdir, "eval", str(step))))
    scalars.update(pq.result())
  writer.write(step, "eval", scalars, extra={"iou_per_class": metrics["iou_per_class"]})
  if pictures is not None:
    writer.images(step, "eval/image_truth_prediction",
                  visualize.side_by_side(*pictures, ds.num_classes, ds.ignore_label))
  logging.info("eval at step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in scalars.items()))
  return scalars
