"""Host scoring beside the device (segjax/evaluation/scoring.py, and the evaluator's loop around it):
worker processes give the figures, annotation ids and files that scoring one image after another
gives, in image order; the one-pass encoders equal one encode per mask; a worker's exception is
raised as itself, a dead worker's images are scored in the eval's process; the workers import no JAX."""
import json
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_panoptic_config
from segjax.engine.scoring_benchmark import synthetic_scene
from segjax.engine import parallel
from segjax.engine.evaluator import evaluate
from segjax.engine.metrics_writer import MetricsWriter
from segjax.errors import UserError
from segjax.evaluation import scoring
from segjax.evaluation.coco import encode_ids, encode_mask
from segjax.evaluation.panoptic_files import encode_segments
from segjax.evaluation.panoptic_quality import VOID

CLASS_NAMES = ["background", "disk", "square", "triangle"]  # the tiny config's: class 0 stuff, 1-3 things
THINGS = (1, 2, 3)


def test_encode_ids_equals_one_pycocotools_encode_per_mask():
  rng = np.random.default_rng(0)
  blocks = np.kron(rng.integers(0, 6, (6, 5)), np.ones((5, 7), np.int64))  # long runs, across columns
  for ids in (np.array([[3]]), rng.integers(0, 4, (5, 7)), blocks, blocks[::-1, ::-1].copy()):
    rles = encode_ids(ids, [0, 1, 2, 3, 4, 5, 99])
    assert sorted(rles) == sorted(set(np.unique(ids).tolist()) & {0, 1, 2, 3, 4, 5})  # absent ids: none
    for k, rle in rles.items():
      assert rle == encode_mask(ids == k), k


@pytest.mark.parametrize("void", [True, False])  # without void, exactly 256 segments: number 256 needs green
def test_encode_segments_equals_a_segment_by_segment_reference(void):
  """Over 255 segments, so that the PNG's green byte is used too."""
  rng = np.random.default_rng(1)
  if void:
    ids = np.kron(rng.permutation(400).reshape(20, 20), np.ones((2, 3), np.int64)) + 1001  # class 1, 400 instances
    ids[:, :5] = 2000  # class 2 (a thing): instance 0, a crowd region
    ids[0, :] = VOID
  else:  # 255 instances of class 1 and a crowd region of class 2
    ids = np.kron(rng.permutation(256).reshape(16, 16), np.ones((2, 3), np.int64)) + 1001
    ids[ids == 1256] = 2000
  label_ids, things = (10, 11, 12), np.array([False, True, True])
  rgb, segments = encode_segments(ids, 1000, label_ids, things)
  present = [v for v in np.unique(ids) if v != VOID]
  expected_rgb = np.zeros(ids.shape + (3,), np.uint8)
  expected = []
  for number, value in enumerate(present, start=1):
    ys, xs = np.nonzero(ids == value)
    expected_rgb[ids == value] = (number % 256, number // 256 % 256, number // 65536)
    expected.append({"id": number, "category_id": label_ids[value // 1000], "area": len(ys),
                     "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                     "iscrowd": int(value % 1000 == 0)})
  assert len(present) > 256 if void else len(present) == 256
  np.testing.assert_array_equal(rgb, expected_rgb)
  assert segments == expected


def _reference_coco(images):
  """COCO's images, annotations and results as the evaluator made them before scoring moved to
  workers: one pycocotools encode per mask, image after image, annotation ids counted on."""
  gt_images, annotations, results = [], [], []
  for image_id, semantic, instance, pred in images:
    gt_images.append({"id": image_id, "height": semantic.shape[0], "width": semantic.shape[1]})
    things = np.isin(semantic, THINGS)
    regions = [(instance == k, 0) for k in np.unique(instance[things & (instance > 0)])]
    regions += [(things & (instance == 0) & (semantic == c), 1) for c in np.unique(semantic[things & (instance == 0)])]
    for mask, crowd in regions:
      category = int(np.bincount(semantic[mask]).argmax())
      if category in THINGS:
        rle = encode_mask(mask)
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                            "segmentation": rle, "area": float(mask.sum()), "bbox": _box(mask), "iscrowd": crowd})
    for k in np.nonzero(pred["valid"])[0]:
      mask = pred["instance_map"] == k + 1
      if mask.any():
        results.append({"image_id": image_id, "category_id": int(pred["classes"][k]),
                        "segmentation": encode_mask(mask), "score": float(pred["scores"][k])})
  return gt_images, annotations, results


def _box(mask):
  ys, xs = np.nonzero(mask)
  return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


class _Split:
  """Eval batches as evaluate reads them, with the eval step's outputs for each: three batches of
  eight, the first image of each the size of the batch (and slow to score), the others small, the
  last batch partly padding. Every map is junk outside its image: padding that must not be scored."""

  def __init__(self, seed=0, canvas=(160, 224)):
    rng = np.random.default_rng(seed)
    self.batches, self.outputs, self.images = [], [], []
    for b in range(3):
      truth = {"semantic": rng.integers(0, 4, (8,) + canvas).astype(np.int32),
               "instance": rng.integers(0, 9, (8,) + canvas).astype(np.int32),
               "valid": np.arange(8) < (8 if b < 2 else 5), "image_id": np.arange(8, dtype=np.int32) + 100 * b + 1,
               "height": np.zeros(8, np.int32), "width": np.zeros(8, np.int32)}
      pred = {"semantic": rng.integers(0, 4, (8,) + canvas).astype(np.int32),
              "panoptic": rng.integers(0, 4000, (8,) + canvas).astype(np.int32),
              "instances": {"instance_map": rng.integers(0, 9, (8,) + canvas).astype(np.int32),
                            "valid": np.ones((8, 8), bool), "classes": np.ones((8, 8), np.int32),
                            "scores": rng.random((8, 8)).astype(np.float32)},
              "confusion": np.eye(4, dtype=np.int32)}
      for i in range(8):
        size = canvas if i == 0 else (int(rng.integers(12, 40)), int(rng.integers(12, 40)))
        t, p = synthetic_scene(rng, size, 4, THINGS, 1000, 255, 8, objects=6, false_positives=2)
        cut = (i, slice(0, size[0]), slice(0, size[1]))
        truth["height"][i], truth["width"][i] = size
        for k in ("semantic", "instance"):
          truth[k][cut] = t[k]
        for k in ("semantic", "panoptic"):
          pred[k][cut] = p[k]
        pred["instances"]["instance_map"][cut] = p["instances"]["instance_map"]
        for k in ("valid", "classes", "scores"):
          pred["instances"][k][i] = p["instances"][k]
        if truth["valid"][i]:
          self.images.append((int(truth["image_id"][i]), t["semantic"], t["instance"], p["instances"]))
      self.batches.append(truth)
      self.outputs.append(pred)

  def __iter__(self):
    return iter(self.batches)

  def file_names(self):
    return {int(i): f"frame_{int(i):04d}" for b in self.batches for i in b["image_id"]}


def _evaluate(split, workdir, monkeypatch, workers):
  """evaluate() over the split, official files included, with `workers` scoring processes."""
  monkeypatch.setenv(scoring.WORKERS_VARIABLE, str(workers))
  config = tiny_panoptic_config(None, num_summary_images=0)
  os.makedirs(workdir)
  outputs = iter(split.outputs)
  writer = MetricsWriter(str(workdir))
  try:
    scalars = evaluate(lambda state, batch: next(outputs), None, split, parallel.make_mesh(), config, CLASS_NAMES,
                       1, str(workdir), writer, official_files=True)
  finally:
    writer.close()
  with open(workdir / "metrics.jsonl") as f:
    return scalars, json.loads(f.readline())["timing"]


def _files(folder):
  found = {}
  for root, _, names in os.walk(folder):
    for name in names:
      with open(os.path.join(root, name), "rb") as f:
        found[os.path.relpath(os.path.join(root, name), folder)] = f.read()
  return found


@pytest.fixture(scope="module")
def split():
  return _Split()


def test_pooled_eval_scores_and_writes_what_one_image_at_a_time_does(split, tmp_path, monkeypatch):
  pooled, pooled_timing = _evaluate(split, tmp_path / "pooled", monkeypatch, 2)
  alone, alone_timing = _evaluate(split, tmp_path / "alone", monkeypatch, 0)
  assert pooled_timing["scoring_workers"] == 2 and alone_timing["scoring_workers"] == 0
  assert pooled == alone and 0.0 < pooled["pq"] < 1.0 and 0.0 < pooled["mask_ap"] < 1.0
  written = _files(tmp_path / "pooled" / "eval" / "1")
  assert written == _files(tmp_path / "alone" / "eval" / "1")  # byte for byte: JSON, PNGs
  # A label PNG for each image of the split, none for the padding.
  labels = sorted(k for k in written if k.startswith("labels"))
  assert labels == sorted(f"labels/frame_{i:04d}_pred_labelIds.png" for i, *_ in split.images)
  # The COCO files hold what one pycocotools encode per mask gave, in image order, ids counted on.
  images, annotations, results = _reference_coco(split.images)
  gt = json.loads(written["instances_gt.json"])
  assert gt["images"] == images and gt["annotations"] == annotations
  assert json.loads(written["instances_results.json"]) == results
  assert len(annotations) > 30 and len(results) > 30
  panoptic = json.loads(written["panoptic_pred.json"])
  assert [a["image_id"] for a in panoptic["annotations"]] == [i for i, *_ in split.images]


def test_the_eval_line_says_where_the_time_went(split, tmp_path, monkeypatch):
  _, timing = _evaluate(split, tmp_path / "run", monkeypatch, 0)
  assert set(timing) == {"eval_seconds", "device_wait_seconds", "scoring_wait_seconds", "host_scoring_seconds",
                         "scoring_workers"}
  assert 0 < timing["host_scoring_seconds"] <= timing["scoring_wait_seconds"] + 0.01  # scored in this process
  assert timing["device_wait_seconds"] + timing["scoring_wait_seconds"] <= timing["eval_seconds"]


class _Fetched:
  """An output leaf that notes when the evaluator fetches it (jax.device_get reads __array__)."""

  def __init__(self, value, log, batch):
    self.value, self.log, self.batch = value, log, batch

  def __array__(self, dtype=None, copy=None):
    if self.log[-1] != f"fetch {self.batch}":
      self.log.append(f"fetch {self.batch}")
    return np.asarray(self.value, dtype)


def test_the_next_batch_is_dispatched_before_the_last_ones_outputs_are_fetched(split, tmp_path, monkeypatch):
  """What keeps an accelerator busy: JAX runs a dispatched step in the background, so batch k+1
  must be dispatched before batch k's outputs are waited for."""
  monkeypatch.setenv(scoring.WORKERS_VARIABLE, "0")
  log, outputs = ["start"], iter(enumerate(split.outputs))

  def step(state, batch):
    k, out = next(outputs)
    log.append(f"dispatch {k}")
    fetched = lambda v: _Fetched(v, log, k)
    return {"confusion": out["confusion"], "semantic": fetched(out["semantic"]),
            "panoptic": fetched(out["panoptic"]), "instances": {n: fetched(v) for n, v in out["instances"].items()}}

  os.makedirs(tmp_path / "run")
  writer = MetricsWriter(str(tmp_path / "run"))
  try:
    evaluate(step, None, split, parallel.make_mesh(), tiny_panoptic_config(None, num_summary_images=0), CLASS_NAMES,
             1, str(tmp_path / "run"), writer)
  finally:
    writer.close()
  assert log == ["start", "dispatch 0", "dispatch 1", "fetch 0", "dispatch 2", "fetch 1", "fetch 2"]


def _images(count, seed=2, size=(24, 32)):
  rng = np.random.default_rng(seed)
  found = []
  for i in range(count):
    t, p = synthetic_scene(rng, size, 4, THINGS, 1000, 255, 8, objects=5, false_positives=2)
    found.append(scoring.Image(i, f"image{i}", i, t["semantic"], t["instance"], p["semantic"], p["instances"],
                               p["panoptic"]))
  return found


def _setup(folder=None, label_divisor=1000):
  return scoring.Setup(tuple(CLASS_NAMES), 4, THINGS, (0, 1, 2, 3), label_divisor, 255, True, folder)


def _score(images, workers, setup=None):
  with scoring.Scoring(setup or _setup(), workers) as scores:
    for start in range(0, len(images), 3):
      scores.submit(images[start:start + 3])
    scored = scores.finish()
  return scored.coco.images, scored.coco.annotations, scored.coco.results, scored.pq.result()


def test_a_workers_exception_is_raised_as_itself_and_the_pool_shut_down():
  images = _images(4)
  semantic = np.ones((40, 40), np.int32)  # one thing class, 1600 instances of a pixel each
  bad = images[2]._replace(semantic=semantic, instance=np.arange(1, 1601, dtype=np.int32).reshape(40, 40),
                           pred_semantic=semantic, pred_panoptic=semantic * 1000,
                           pred_instances={**images[2].pred_instances, "instance_map": np.zeros((40, 40), np.int32)})
  with pytest.raises(UserError, match=r"^An image has 1600 instances, more than the dataset's label_divisor=1000 "
                                      r"can number\.$") as raised:
    _score(images[:2] + [bad] + images[3:], 2)
  assert "panoptic_from_labels" in str(raised.value.__cause__)  # the worker's traceback, attached
  assert not multiprocessing.active_children()


class _ExitOnArrival:
  """Picklable; ends the process that unpickles it, as a worker killed mid-eval ends."""

  def __reduce__(self):
    return os._exit, (3,)  # pylint: disable=protected-access


def test_a_dead_workers_images_are_scored_in_the_evals_process(caplog):
  images = _images(7)
  doomed = images[:]
  doomed[4] = doomed[4]._replace(pred_instances={**doomed[4].pred_instances, "end": _ExitOnArrival()})
  with caplog.at_level("WARNING"):
    assert _score(doomed, 2) == _score(images, 0)
  assert "A scoring worker process died" in caplog.text
  assert not multiprocessing.active_children()


def test_the_workers_import_no_jax_and_no_tensorflow():
  code = ("import sys; import segjax.evaluation.scoring; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax', 'tensorflow')))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
  assert result.stdout.strip() == "[]"


def test_how_many_workers(monkeypatch):
  monkeypatch.delenv(scoring.WORKERS_VARIABLE, raising=False)
  monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
  assert scoring.default_workers(1024 * 2048) == 4
  assert scoring.default_workers(64 * 64) == 0  # sending a tiny image costs what scoring it does
  monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0}, raising=False)
  assert scoring.default_workers(1024 * 2048) == 0
  monkeypatch.setenv(scoring.WORKERS_VARIABLE, "3")
  assert scoring.default_workers(64 * 64) == 3
  monkeypatch.setenv(scoring.WORKERS_VARIABLE, "all")
  with pytest.raises(UserError, match=r"^SEGJAX_SCORING_WORKERS is 'all': give a number of worker processes, "
                                      r"or 0 to score in the eval's own process\.$"):
    scoring.default_workers(64 * 64)


def test_the_pool_is_decided_again_while_the_images_are_small(monkeypatch):
  """Size buckets come smallest first: an eval whose first batch is small still pools its large ones."""
  asked = []
  monkeypatch.setattr(scoring, "default_workers", lambda pixels: asked.append(pixels) or 0)
  _score(_images(3, size=(24, 32)) + _images(3, size=(48, 64)), None)
  assert asked == [24 * 32, 48 * 64]
