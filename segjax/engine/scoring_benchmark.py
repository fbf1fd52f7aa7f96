"""`python -m segjax.benchmark --scoring`: the eval's host scoring timed alone, on synthetic
Cityscapes-size panoptic predictions, in the eval's own process and on its pool of workers
(segjax/evaluation/scoring.py), and an eval whose stand-in device takes as long as the scoring
against the longer of the two."""
import concurrent.futures
import json
import os
import shutil
import tempfile
import time

import jax
import numpy as np

from segjax import heads
from segjax.engine import parallel
from segjax.engine.evaluator import evaluate
from segjax.engine.metrics_writer import MetricsWriter
from segjax.errors import UserError
from segjax.evaluation import scoring


# Cityscapes' classes as the scoring benchmark draws them where the config leaves them to the dataset.
CITYSCAPES = {"num_classes": 19, "thing_classes": tuple(range(11, 19)), "label_divisor": 1000, "ignore_label": 255,
              "label_ids": (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)}


def synthetic_scene(rng, size, num_classes, thing_classes, label_divisor, ignore_label, top_k, objects=30,
                    false_positives=20):
  """A Cityscapes-like image's truth and prediction, as the evaluator gets them from the device.

  Truth: stuff in bands and blocks, `objects` thing ellipses numbered as Cityscapes numbers them
  (every 7th a crowd region, instance 0), an ignored band at the bottom. Prediction: the truth
  shifted by a few pixels, with ragged stuff, some classes wrong, some instances missed or split,
  `false_positives` invented ones and a few valid slots without pixels; the panoptic map fused
  from it. Returns ({"semantic", "instance"}, {"semantic", "panoptic", "instances"}) in NumPy."""
  height, width = size
  things = np.asarray(thing_classes)
  stuff = np.setdiff1d(np.arange(num_classes), things)

  def ellipse(max_ry, max_rx):  # (window, mask inside it) of a random ellipse
    cy, cx = rng.integers(0, height), rng.integers(0, width)
    ry, rx = rng.integers(1, max(max_ry, 2)), rng.integers(1, max(max_rx, 2))
    window = slice(max(cy - ry, 0), min(cy + ry + 1, height)), slice(max(cx - rx, 0), min(cx + rx + 1, width))
    yy, xx = np.ogrid[window[0], window[1]]
    return window, ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1

  semantic = np.full(size, stuff[0], np.int32)
  semantic[:height // 3], semantic[height // 3:2 * height // 3] = stuff[-1], stuff[len(stuff) // 2]
  for c in rng.choice(stuff, 10):
    y, x = rng.integers(0, height), rng.integers(0, width)
    semantic[y:y + rng.integers(1, height // 4 + 2), x:x + rng.integers(1, width // 4 + 2)] = c
  instance = np.zeros(size, np.int32)
  for k in range(objects):
    window, inside = ellipse(height // 8, width // 12)
    c = int(rng.choice(things))
    semantic[window][inside] = c
    instance[window][inside] = 0 if k % 7 == 6 else 1000 * (24 + c) + k
  semantic[height - height // 10:] = ignore_label
  instance[semantic == ignore_label] = 0

  shift = (max(height // 256, 1), -max(width // 340, 1))
  pred_semantic = np.roll(np.where(semantic == ignore_label, stuff[0], semantic), shift, (0, 1))
  ragged = np.kron(rng.random((height // 8 + 1, width // 8 + 1)) < 0.03, np.ones((8, 8), bool))[:height, :width]
  pred_semantic = np.where(ragged & ~np.isin(pred_semantic, things), np.roll(pred_semantic, 40, 0), pred_semantic)
  found = np.roll(np.where(np.isin(semantic, things), instance, 0), shift, (0, 1))
  slots, valid = np.zeros(size, np.int32), np.zeros(top_k, bool)
  classes, scores = np.zeros(top_k, np.int32), np.zeros(top_k, np.float32)

  def add(mask, c, score):
    n = int(valid.sum())
    if n < top_k:
      slots[mask], valid[n], classes[n], scores[n] = n + 1, True, c, score

  columns = np.arange(width)
  for i in np.unique(found[found > 0]):
    if rng.random() < 0.1:
      continue  # missed
    mask = found == i
    c = int(np.bincount(pred_semantic[mask]).argmax())
    if rng.random() < 0.2:  # split in two
      left = mask & (columns < np.nonzero(mask)[1].mean())
      add(left, c, rng.random())
      mask &= ~left
    add(mask, c if rng.random() < 0.85 else int(rng.choice(things)), rng.random())
  for _ in range(false_positives):
    window, inside = ellipse(height // 32, width // 64)
    mask = np.zeros(size, bool)
    mask[window] = inside
    add(mask & (slots == 0), int(rng.choice(things)), rng.random() / 2)
  for _ in range(3):
    add(np.zeros(size, bool), int(things[0]), 0.05)
  pred_semantic = np.where(slots > 0, classes[np.maximum(slots - 1, 0)], pred_semantic)
  panoptic = np.where(slots > 0, pred_semantic * label_divisor + slots,
                      np.where(np.isin(pred_semantic, things), -1, pred_semantic * label_divisor))
  return ({"semantic": semantic, "instance": instance},
          {"semantic": pred_semantic.astype(np.int32), "panoptic": panoptic.astype(np.int32),
           "instances": {"instance_map": slots, "valid": valid, "classes": classes, "scores": scores}})


class _Pending:
  """An output of the stand-in device: jax.device_get reads it through __array__, which waits for
  the device's batch, as it waits for a jax.Array still being computed."""

  def __init__(self, done, *path):
    self.done, self.path = done, path

  def __array__(self, dtype=None, copy=None):
    value = self.done.result()
    for key in self.path:
      value = value[key]
    return np.asarray(value, dtype)


class _Batches:
  """Eval batches of synthetic images as evaluate reads them: host batches, file names, and the eval
  step's outputs for each. The scenes repeat, so each distinct batch is stacked once: the host's time
  goes to scoring, not to drawing the data."""

  def __init__(self, scenes, images, batch):
    self.scenes, self.images, self.batch, self._stacked = scenes, images, batch, {}

  def file_names(self):
    return {i: f"image{i:05d}" for i in range(self.images)}

  def truths(self):
    """(index of the batch's first image, its [(truth, prediction)] rows) per batch."""
    for start in range(0, self.images, self.batch):
      yield start, [self.scenes[i % len(self.scenes)] for i in range(start, start + self.batch)]

  def _stack(self, start):
    key = tuple(i % len(self.scenes) for i in range(start, start + self.batch))
    if key not in self._stacked:
      rows = [self.scenes[i] for i in key]
      stack = lambda get: np.stack([get(row) for row in rows])
      truth = {k: stack(lambda row, k=k: row[0][k]) for k in ("semantic", "instance")}
      pred = {k: stack(lambda row, k=k: row[1][k]) for k in ("semantic", "panoptic")}
      pred["instances"] = {k: stack(lambda row, k=k: row[1]["instances"][k]) for k in rows[0][1]["instances"]}
      self._stacked[key] = truth, pred
    return self._stacked[key]

  def __iter__(self):
    for start, _ in self.truths():
      truth, _ = self._stack(start)
      n, h, w = truth["semantic"].shape
      ids = np.arange(start, start + n, dtype=np.int32)
      yield {**truth, "valid": ids < self.images, "image_id": ids, "height": np.full(n, h, np.int32),
             "width": np.full(n, w, np.int32)}

  def outputs(self, num_classes):
    for start, _ in self.truths():
      yield {**self._stack(start)[1], "confusion": np.zeros((num_classes, num_classes), np.int32)}


def run_scoring(config, size=(1024, 2048), images=None, workers=None, batch=None, distinct=4):
  """Times host scoring alone of `images` synthetic images (config.benchmark.steps) of `size`, in
  this process and on `workers` processes (scoring.default_workers), official files included; then
  an eval of them (evaluate itself) on a stand-in device that takes as long per batch as the pool
  scores one, and, as an accelerator does, computes in the background of the step's dispatch (no
  CPU). Returns the record it prints."""
  ds, bench = config.dataset, config.benchmark
  images = images or bench.steps
  batch = batch or 2  # small batches: the eval's first and last batch, unoverlapped, weigh little
  meta = dict(CITYSCAPES) if ds.num_classes is None else {
      "num_classes": ds.num_classes, "thing_classes": tuple(ds.thing_classes or ()),
      "label_divisor": ds.label_divisor or 1000, "ignore_label": 255 if ds.ignore_label is None else ds.ignore_label,
      "label_ids": tuple(ds.label_ids or range(ds.num_classes))}
  if not meta["thing_classes"] or "instances" not in heads.get(config).metrics:
    raise UserError("--scoring times the scoring of instances and panoptic maps: give a config whose head "
                    "predicts them, e.g. configs/cityscapes/panoptic.py.")
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.dataset.update({**meta, "image_ids_by_name": None})
    config.num_summary_images = 0
  rng = np.random.default_rng(config.seed)
  scenes = [synthetic_scene(rng, size, meta["num_classes"], meta["thing_classes"], meta["label_divisor"],
                            meta["ignore_label"], int(config.postprocess.get("top_k", 200)))
            for _ in range(min(distinct, images))]
  data = _Batches(scenes, images, batch)
  names = data.file_names()
  class_names = [f"class{c}" for c in range(meta["num_classes"])]
  workers = scoring.default_workers(size[0] * size[1]) if workers is None else workers

  def score(folder, pool):
    """Seconds to score every image (the final COCOeval and files included) and the figures."""
    setup = scoring.Setup.from_dataset(config.dataset, class_names, True, folder)
    start = time.perf_counter()
    with scoring.Scoring(setup, pool) as scores:
      for i, rows in data.truths():
        scores.submit([scoring.Image(j, names[j], j, t["semantic"], t["instance"], p["semantic"], p["instances"],
                                     p["panoptic"]) for j, (t, p) in enumerate(rows, i) if j < images])
      scored = scores.finish()
    figures = {**scored.coco.result(folder), **scored.pq.result()}
    scored.files.write()
    return time.perf_counter() - start, figures

  root, device_queue = tempfile.mkdtemp(prefix="segjax_scoring_"), concurrent.futures.ThreadPoolExecutor(1)
  try:
    alone, figures = score(os.path.join(root, "in_process"), 0)
    pooled, pooled_figures = score(os.path.join(root, "pooled"), workers)
    batches = -(-images // batch)
    device = pooled / batches  # per batch: as long as the pool takes to score one
    outputs = data.outputs(meta["num_classes"])

    def compute():  # one batch on the stand-in device: `device` seconds, its outputs drawn meanwhile
      start = time.perf_counter()
      out = next(outputs)
      time.sleep(max(device - (time.perf_counter() - start), 0.0))
      return out

    def step(state, inputs):  # returns at once, as a dispatched jitted step does
      del state, inputs
      done = device_queue.submit(compute)
      return {"confusion": _Pending(done, "confusion"), "semantic": _Pending(done, "semantic"),
              "panoptic": _Pending(done, "panoptic"),
              "instances": {k: _Pending(done, "instances", k) for k in ("instance_map", "valid", "classes", "scores")}}

    writer = MetricsWriter(root)
    try:
      scalars = evaluate(step, None, data, parallel.make_mesh(jax.devices()[:1]), config, class_names, 0, root,
                         writer, official_files=True, scoring_workers=workers)
    finally:
      writer.close()
    with open(os.path.join(root, "metrics.jsonl")) as f:
      timing = json.loads(f.readline())["timing"]
  finally:
    device_queue.shutdown(cancel_futures=True)
    shutil.rmtree(root, ignore_errors=True)
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  record = {"bench": "segjax", "mode": "scoring", "size": list(size), "images": images, "cpu_cores": cores,
            "workers": workers, "official_files": True,
            "images_per_s_in_process": round(images / alone, 2), "images_per_s": round(images / pooled, 2),
            "same_figures": figures == pooled_figures == {k: scalars[k] for k in figures},
            "eval_batch": batch, "device_seconds": round(device * batches, 3), "host_seconds": round(pooled, 3),
            "eval_over_longer": round(timing["eval_seconds"] / max(device * batches, pooled), 3), "timing": timing}
  print(json.dumps(record), flush=True)
  return record
