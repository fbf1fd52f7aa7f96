"""Runs the eval step over the eval split and turns what it returns into metrics, pictures and the
official output files."""
import contextlib
import os
import time

from absl import logging
import jax
import numpy as np

from segjax import heads, visualize
from segjax.engine import parallel
from segjax.evaluation import scoring, semantic_metrics


def evaluate(eval_fn, state, eval_data, mesh, config, class_names, step, workdir, writer,
             official_files=False, kind="eval", extra=None, notes=None, scoring_workers=None):
  """mIoU and pixel accuracy; where the config's head predicts instances also COCO mask AP and PQ.

  Each image is scored inside its own height and width: the padding never reaches a metric.
  Appends one line to metrics.jsonl and, for instances, writes the COCO ground truth and results it
  scored under WORKDIR/<kind>/<step>/ (eval_only's apart from the run's own); with
  `official_files`, also the predicted label PNGs and the COCO panoptic PNGs and JSON of predictions
  and ground truth there. Every process must call it;
  only process 0 scores instances and writes, and its return value is the one to read. The line's
  `kind` is `kind`, with the scalars `extra()` gives after the pass and the JSON `notes` added, and
  where the time went (`timing`).

  The device need not wait for the host: batch k+1 is dispatched before batch k's outputs are
  fetched, and the images are scored in `scoring_workers` processes (default: scoring.default_workers)
  while the loop goes on, merged in order, so every figure and file is the one scoring them here one
  by one gives. The loop waits for batch k-2's scoring only where the host is the slower.
  """
  started = time.perf_counter()
  ds = config.dataset
  instances = "instances" in heads.get(config).metrics
  main = jax.process_index() == 0  # every process computes and gathers; process 0 scores and writes
  folder = os.path.join(workdir, kind, str(step))
  names = eval_data.file_names() if official_files and main else {}
  scores = None  # process 0's scoring of instances and official files
  if main and (instances or official_files):
    setup = scoring.Setup.from_dataset(ds, class_names, instances, folder if official_files else None)
    scores = scoring.Scoring(setup, scoring_workers)
  confusions, pictures, device_wait = [], None, 0.0

  def fetch(inputs, out):
    """Batch k's pictures and images, gathered (the device has batch k+1 meanwhile) and handed to
    the scoring workers."""
    nonlocal pictures, device_wait
    if pictures is None and config.num_summary_images:
      n, start = config.num_summary_images, time.perf_counter()
      sizes = ("input_height", "input_width", "height", "width") if "input_height" in inputs else ()
      seen = parallel.gather({"image": inputs["image"], "truth": inputs["semantic"], "pred": out["semantic"],
                              **{k: inputs[k] for k in sizes}})
      image = seen["image"][:n]
      if sizes:  # images at a base size: shown at their own, as their labels
        image = visualize.at_label_size(image, np.stack([seen[k][:n] for k in sizes[:2]], -1),
                                        np.stack([seen[k][:n] for k in sizes[2:]], -1), seen["truth"].shape[1:3])
      pictures = (image, seen["truth"][:n], seen["pred"][:n])
      device_wait += time.perf_counter() - start
    if not (instances or official_files):
      return
    # Each host holds only its slice of the eval data: gather truth and predictions of the whole
    # global batch, in the same row order, before scoring.
    start = time.perf_counter()
    truth = parallel.gather({k: inputs[k] for k in ("semantic", "instance", "valid", "image_id", "height",
                                                    "width") if k in inputs})
    pred = parallel.gather({k: out[k] for k in ("semantic", "instances", "panoptic") if k in out})
    device_wait += time.perf_counter() - start
    if main:
      scores.submit([_image(truth, pred, i, names, ds, official_files) for i in np.nonzero(truth["valid"])[0]])

  with scores if scores is not None else contextlib.nullcontext():
    previous = None
    for batch in eval_data:
      inputs = parallel.to_global(batch, mesh)
      out = eval_fn(state, inputs)  # dispatched: the device computes it while the batch before is fetched
      confusions.append(out["confusion"])  # fetched after the loop: no wait for each batch
      if previous is not None:
        fetch(*previous)
      previous = inputs, out
    if previous is not None:
      fetch(*previous)
    start = time.perf_counter()
    # Summed in int64: one batch fits int32, a Cityscapes-size split (> 2^31 pixels) does not.
    confusion = np.sum([np.asarray(c, np.int64) for c in jax.device_get(confusions)], axis=0)
    device_wait += time.perf_counter() - start
    scored = scores.finish() if scores is not None else None
  metrics = semantic_metrics(confusion, class_names)
  scalars = {"miou": metrics["miou"], "pixel_acc": metrics["pixel_acc"]}
  start = time.perf_counter()
  if scored is not None and scored.coco is not None:
    scalars.update(scored.coco.result(folder))
    scalars.update(scored.pq.result())
  if scored is not None and scored.files is not None:
    scored.files.write()
  final = time.perf_counter() - start
  scalars.update(extra() if extra else {})
  timing = {"eval_seconds": round(time.perf_counter() - started, 3), "device_wait_seconds": round(device_wait, 3)}
  if scores is not None:
    timing.update(scoring_wait_seconds=round(scores.wait_seconds + final, 3),
                  host_scoring_seconds=round(scores.work_seconds + final, 3), scoring_workers=scores.workers)
  writer.write(step, kind, scalars, extra={"iou_per_class": metrics["iou_per_class"], **(notes or {}),
                                           "timing": timing})
  if pictures is not None:
    writer.images(step, f"{kind}/image_truth_prediction",
                  visualize.side_by_side(*pictures, ds.num_classes, ds.ignore_label, ds.get("colormap")))
  logging.info("%s at step %d: %s", kind, step, shown(scalars))
  logging.info("%s at step %d took %s", kind, step, ", ".join(f"{k} {v}" for k, v in timing.items()))
  return scalars


def _image(truth, pred, i, names, ds, official_files):
  """Row i of a gathered batch as scoring's Image, every map cut to the image's own size."""
  cut = (slice(0, truth["height"][i]), slice(0, truth["width"][i]))
  image_id = truth["image_id"][i]
  name = names.get(int(image_id), str(image_id))
  instances = pred.get("instances")
  return scoring.Image(
      image_id=image_id, name=name, panoptic_id=name if ds.get("image_ids_by_name") else image_id,
      semantic=truth["semantic"][i][cut], instance=truth["instance"][i][cut] if "instance" in truth else None,
      pred_semantic=pred["semantic"][i][cut] if official_files else None,
      pred_instances=None if instances is None else {
          k: (v[i][cut] if k == "instance_map" else v[i]) for k, v in instances.items()},
      pred_panoptic=pred["panoptic"][i][cut] if "panoptic" in pred else None)


def shown(scalars):
  """"miou 0.8123, pixel_acc 0.9512, ...": the figures of an eval, as the log and --eval_only say them."""
  return ", ".join(f"{k} {v:.4f}" for k, v in scalars.items())
