"""The evaluator on the tiny validation split, scoring predictions with known flaws (tests/oracle.py):
figures inside (0, 1), files that pycocotools rescores alike, padding never scored, counts past int32."""
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
import tensorflow_datasets as tfds

from conftest import tiny_panoptic_config
import oracle


@pytest.fixture(scope="module")
def scored(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("oracle_eval"))
  return oracle.score(tiny_panoptic_config(data_dir), workdir), workdir


def test_flawed_predictions_score_inside_zero_and_one(scored):
  scores, workdir = scored
  for key in ("miou", "pixel_acc", "mask_ap", "mask_ap50", "pq", "pq_things", "sq_things", "rq_things"):
    assert 0.3 < scores[key] < 0.99, (key, scores[key])
  assert scores["pq_stuff"] == 1.0  # the background (the one stuff class) is predicted exactly
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    line = json.loads(f.readline())
  assert line["step"] == 1 and line["kind"] == "eval" and line["mask_ap"] == scores["mask_ap"]


def test_semantic_figures_equal_a_numpy_count(data_dir, scored):
  scores, _ = scored
  confusion = np.zeros((4, 4), np.int64)
  for ex in tfds.builder("synthetic_scenes/tiny", data_dir=data_dir).as_dataset(split="validation"):
    truth, instance = ex["semantic"].numpy()[..., 0], ex["instance"].numpy()[..., 0]
    pred = np.where(instance == 2, truth % 3 + 1, truth)  # the oracle's one semantic flaw
    confusion += np.bincount(truth.ravel() * 4 + pred.ravel(), minlength=16).reshape(4, 4)
  tp, union = np.diag(confusion), confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
  assert scores["miou"] == pytest.approx(np.mean(tp / union), abs=1e-12)
  assert scores["pixel_acc"] == pytest.approx(tp.sum() / confusion.sum(), abs=1e-12)


def test_written_coco_files_hold_every_instance_and_rescore_alike(data_dir, scored):
  scores, workdir = scored
  folder = os.path.join(workdir, "eval", "1")
  with open(os.path.join(folder, "instances_gt.json")) as f:
    gt = json.load(f)
  split = tfds.builder("synthetic_scenes/tiny", data_dir=data_dir).as_dataset(split="validation")
  counts = {int(ex["image_id"]): len(ex["objects"]["label"]) for ex in split}
  assert sorted(im["id"] for im in gt["images"]) == sorted(counts)
  assert len(gt["annotations"]) == sum(counts.values())  # every object is a thing here
  # pycocotools alone, on the files, gives the reported figures.
  coco = COCO(os.path.join(folder, "instances_gt.json"))
  run = COCOeval(coco, coco.loadRes(os.path.join(folder, "instances_results.json")), iouType="segm")
  run.evaluate()
  run.accumulate()
  run.summarize()
  assert run.stats[0] == pytest.approx(scores["mask_ap"], abs=1e-12)
  assert run.stats[1] == pytest.approx(scores["mask_ap50"], abs=1e-12)


def test_confusion_is_summed_past_int32(data_dir, tmp_path):
  """A Cityscapes-size split (thousands of 1024x2048 images) counts more than 2^31 pixels."""

  def big(out):  # each of the 3 batches reports 2^30 correct background pixels, 1 wrong
    out["confusion"] = np.array([[2**30, 1, 0, 0]] + [[0] * 4] * 3, np.int32)
    return out

  scores = oracle.score(tiny_panoptic_config(data_dir), str(tmp_path), edit=big)
  assert scores["pixel_acc"] == pytest.approx(3 * 2**30 / (3 * 2**30 + 3))
  assert scores["miou"] == pytest.approx((3 * 2**30 / (3 * 2**30 + 3) + 0) / 2)


def test_scoring_workers_give_the_figures_and_files_of_scoring_here(data_dir, tmp_path, monkeypatch):
  """The eval split through the real pipeline (padding in its last batch), official files written:
  two scoring processes, or none, give the same figures and the same bytes in every file."""
  written = {}
  for workers in (2, 0):
    monkeypatch.setenv("SEGJAX_SCORING_WORKERS", str(workers))
    workdir = tmp_path / str(workers)
    scores = oracle.score(tiny_panoptic_config(data_dir), str(workdir), official_files=True)
    with open(workdir / "metrics.jsonl") as f:
      assert json.loads(f.readline())["timing"]["scoring_workers"] == workers
    folder = workdir / "eval" / "1"
    written[workers] = scores, {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
  assert written[2] == written[0]
  assert len([name for name in written[2][1] if name.startswith("labels")]) > 8  # more images than a batch
