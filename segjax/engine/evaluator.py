"""Runs the eval step over the eval split and turns what it returns into metrics, pictures and the
official output files."""
import os

from absl import logging
import jax
import numpy as np

from segjax import heads, visualize
from segjax.engine import parallel
from segjax.evaluation import CocoMaskEvaluator, PanopticQuality, panoptic_from_labels, semantic_metrics
from segjax.evaluation.label_files import write_labels
from segjax.evaluation.panoptic_files import PanopticFiles


def evaluate(eval_fn, state, eval_data, mesh, config, class_names, step, workdir, writer,
             official_files=False, kind="eval", extra=None, notes=None):
  """mIoU and pixel accuracy; where the config's head predicts instances also COCO mask AP and PQ.

  Each image is scored inside its own height and width: the padding never reaches a metric.
  Appends one line to metrics.jsonl and, for instances, writes the COCO ground truth and results it
  scored under WORKDIR/<kind>/<step>/ (eval_only's apart from the run's own); with
  `official_files`, also the predicted label PNGs and the COCO panoptic PNGs and JSON of predictions
  and ground truth there. Every process must call it;
  only process 0 scores instances and writes, and its return value is the one to read. The line's
  `kind` is `kind`, with the scalars `extra()` gives after the pass and the JSON `notes` added.
  """
  ds = config.dataset
  instances = "instances" in heads.get(config).metrics
  main = jax.process_index() == 0  # every process computes and gathers; process 0 scores and writes
  folder = os.path.join(workdir, kind, str(step))
  names = eval_data.file_names() if official_files and main else {}
  confusions, pictures, coco, pq, panoptic_files = [], None, None, None, None
  for batch in eval_data:
    inputs = parallel.to_global(batch, mesh)
    out = eval_fn(state, inputs)
    confusions.append(out["confusion"])  # fetched after the loop: no wait for each batch
    if pictures is None and config.num_summary_images:
      n = config.num_summary_images
      sizes = ("input_height", "input_width", "height", "width") if "input_height" in inputs else ()
      seen = parallel.gather({"image": inputs["image"], "truth": inputs["semantic"], "pred": out["semantic"],
                              **{k: inputs[k] for k in sizes}})
      image = seen["image"][:n]
      if sizes:  # images at a base size: shown at their own, as their labels
        image = visualize.at_label_size(image, np.stack([seen[k][:n] for k in sizes[:2]], -1),
                                        np.stack([seen[k][:n] for k in sizes[2:]], -1), seen["truth"].shape[1:3])
      pictures = (image, seen["truth"][:n], seen["pred"][:n])
    if not (instances or official_files):
      continue
    # Each host holds only its slice of the eval data: gather truth and predictions of the whole
    # global batch, in the same row order, before scoring.
    truth = parallel.gather({k: inputs[k] for k in ("semantic", "instance", "valid", "image_id", "height",
                                                    "width") if k in inputs})
    pred = parallel.gather({k: out[k] for k in ("semantic", "instances", "panoptic") if k in out})
    if not main:
      continue
    if instances and coco is None:
      coco = CocoMaskEvaluator(class_names, ds.thing_classes, ds.get("label_ids"))
      pq = PanopticQuality(ds.num_classes, ds.thing_classes, ds.label_divisor)
      if official_files:
        panoptic_files = PanopticFiles(folder, class_names, ds.thing_classes, ds.label_ids, ds.label_divisor)
    for i in np.nonzero(truth["valid"])[0]:
      cut = (slice(0, truth["height"][i]), slice(0, truth["width"][i]))
      image_id = truth["image_id"][i]
      name = names.get(int(image_id), str(image_id))
      if official_files:
        write_labels(os.path.join(folder, "labels"), name, pred["semantic"][i][cut], ds.label_ids)
      if not instances:
        continue
      semantic, instance = truth["semantic"][i][cut], truth["instance"][i][cut]
      coco.add(image_id, semantic, instance,
               {k: (v[i][cut] if k == "instance_map" else v[i]) for k, v in pred["instances"].items()})
      truth_ids = panoptic_from_labels(semantic, instance, ds.thing_classes, ds.ignore_label, ds.label_divisor)
      pq.add(truth_ids, pred["panoptic"][i][cut])
      if panoptic_files is not None:
        panoptic_files.add(name if ds.get("image_ids_by_name") else image_id, name, truth_ids,
                           pred["panoptic"][i][cut])
  # Summed in int64: one batch fits int32, a Cityscapes-size split (> 2^31 pixels) does not.
  confusion = np.sum([np.asarray(c, np.int64) for c in jax.device_get(confusions)], axis=0)
  metrics = semantic_metrics(confusion, class_names)
  scalars = {"miou": metrics["miou"], "pixel_acc": metrics["pixel_acc"]}
  if coco is not None:
    scalars.update(coco.result(folder))
    scalars.update(pq.result())
  if panoptic_files is not None:
    panoptic_files.write()
  scalars.update(extra() if extra else {})
  writer.write(step, kind, scalars, extra={"iou_per_class": metrics["iou_per_class"], **(notes or {})})
  if pictures is not None:
    writer.images(step, f"{kind}/image_truth_prediction",
                  visualize.side_by_side(*pictures, ds.num_classes, ds.ignore_label, ds.get("colormap")))
  logging.info("%s at step %d: %s", kind, step, shown(scalars))
  return scalars


def shown(scalars):
  """"miou 0.8123, pixel_acc 0.9512, ...": the figures of an eval, as the log and --eval_only say them."""
  return ", ".join(f"{k} {v:.4f}" for k, v in scalars.items())
