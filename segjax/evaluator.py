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
  scored under WORKDIR/eval/<step>/.
  """
  ds, pp = config.dataset, config.postprocess
  confusion, pictures, coco, pq = None, None, None, None
  for batch in eval_data:
    out = eval_fn(state, parallel.to_global(batch, mesh))
    confusion = out["confusion"] if confusion is None else confusion + out["confusion"]
    if pictures is None and config.num_summary_images:
      n = config.num_summary_images
      pictures = (batch["image"][:n], batch["semantic"][:n], parallel.to_host_local(out["semantic"], mesh)[:n])
    if "instances" in out:
      if coco is None:
        coco = CocoMaskEvaluator(class_names, ds.thing_classes)
        pq = PanopticQuality(ds.num_classes, ds.thing_classes, pp.label_divisor)
      instances = jax.tree.map(lambda x: parallel.to_host_local(x, mesh), out["instances"])
      panoptic = parallel.to_host_local(out["panoptic"], mesh)
      for i in np.nonzero(batch["valid"])[0]:
        coco.add(batch["image_id"][i], batch["semantic"][i], batch["instance"][i],
                 {k: v[i] for k, v in instances.items()})
        pq.add(panoptic_from_labels(batch["semantic"][i], batch["instance"][i], ds.thing_classes,
                                    ds.ignore_label, pp.label_divisor), panoptic[i])
  metrics = semantic_metrics(jax.device_get(confusion), class_names)
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
