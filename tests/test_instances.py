"""Instance targets, JAX post-processing, panoptic quality and COCO mask AP."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import postprocess
from segjax.data import scenes, targets
from segjax.evaluation import CocoMaskEvaluator, PanopticQuality, panoptic_from_labels, score_files

THINGS = (1, 2, 3)


def _targets(scene):
  return {k: v.numpy() for k, v in targets.center_offset_targets(
      scene["semantic"].astype(np.int32), scene["instance"].astype(np.int32), THINGS, 8.0, 255, 32).items()}


@pytest.mark.parametrize("index", range(6))
def test_decoding_ground_truth_targets_recovers_the_instances(index):
  scene = scenes.draw_scene([0, 1, index])
  t = _targets(scene)
  assert t["center"].max() == 1.0 and t["center"].min() >= 0.0
  logits = jax.nn.one_hot(scene["semantic"], 4) * 10.0
  out = jax.jit(lambda l, c, o: postprocess.instances(l, c, o, thing_classes=THINGS, threshold=0.5,
                                                      nms_kernel=7, top_k=16))(logits, t["center"], t["offsets"])
  found = {tuple(np.flatnonzero(m)) for m, v in zip(np.asarray(out["masks"]), np.asarray(out["valid"])) if v}
  truth = {tuple(np.flatnonzero(scene["instance"] == k)) for k in range(1, len(scene["label"]) + 1)}
  assert found == truth
  for m, v, c in zip(np.asarray(out["masks"]), np.asarray(out["valid"]), np.asarray(out["classes"])):
    if v:
      assert np.all(scene["semantic"][m] == c)


def test_postprocess_is_jittable_with_static_shapes():
  fn = jax.jit(jax.vmap(lambda l, c, o: postprocess.instances(l, c, o, thing_classes=THINGS, top_k=5)))
  key = jax.random.key(0)
  out = fn(jax.random.normal(key, (2, 32, 40, 4)), jax.random.uniform(key, (2, 32, 40)),
           jax.random.normal(key, (2, 32, 40, 2)))
  assert out["masks"].shape == (2, 5, 32, 40) and out["masks"].dtype == jnp.bool_
  assert out["valid"].shape == out["classes"].shape == out["scores"].shape == (2, 5)
  pan = jax.jit(jax.vmap(lambda s, i: postprocess.panoptic_fusion(s, i, thing_classes=THINGS, min_stuff_area=4)))(
      jnp.zeros((2, 32, 40), jnp.int32), out)
  assert pan.shape == (2, 32, 40) and pan.dtype == jnp.int32


def _pq(truth, pred):
  pq = PanopticQuality(num_classes=3, thing_classes=(1, 2))
  pq.add(np.array(truth), np.array(pred))
  return pq.result()


def test_pq_perfect_match():
  truth = [[0, 0, 1001, 1001], [0, 0, 1002, 2001]]
  assert _pq(truth, truth)["pq"] == pytest.approx(1.0)


def test_pq_one_missed_and_one_false_positive():
  truth = [[1001, 1001, 1002, 1002]]
  missed = _pq(truth, [[1001, 1001, -1, -1]])
  assert missed["rq_things"] == pytest.approx(1 / 1.5) and missed["sq_things"] == pytest.approx(1.0)
  extra = _pq([[1001, 1001, -1, -1], [0, 0, 0, 0]], [[1001, 1001, -1, -1], [0, 0, 1003, 1003]])
  # Class 1: one hit, one false positive; stuff class 0 matches with IoU 2/4 = 0.5: not a hit.
  assert extra["rq_things"] == pytest.approx(1 / 1.5)
  assert extra["pq_stuff"] == 0.0


def test_pq_iou_of_exactly_one_half_is_not_a_match():
  result = _pq([[1001, 1001, 0, 0]], [[1001, 1001, 1001, 1001]])
  assert result["pq_things"] == 0.0


def test_pq_ignores_predictions_on_void():
  truth = panoptic_from_labels(np.array([[1, 1, 255, 255]]), np.array([[1, 1, 0, 0]]), (1, 2), 255)
  assert _pq(truth, [[1001, 1001, 1002, 1002]])["pq"] == pytest.approx(1.0)


def test_coco_ap_of_ground_truth_against_itself_is_one(tmp_path):
  ev = CocoMaskEvaluator(scenes.CLASS_NAMES, THINGS)
  for index in range(3):
    s = scenes.draw_scene([0, 1, index], size=64, max_objects=5)
    k = len(s["label"])
    masks = np.stack([s["instance"] == i for i in range(1, k + 1)])
    ev.add(index, s["semantic"], s["instance"],
           {"masks": masks, "valid": np.ones(k, bool), "classes": s["label"], "scores": np.ones(k)})
  result = ev.result(str(tmp_path))
  assert result["mask_ap"] == pytest.approx(1.0)
  # The files it wrote rescore to the same figure with pycocotools alone.
  assert score_files(os.path.join(tmp_path, "instances_gt.json"),
                     os.path.join(tmp_path, "instances_results.json")) == result
  assert len(json.load(open(os.path.join(tmp_path, "instances_results.json")))) == len(ev.annotations)


def test_panoptic_run_reports_ap_and_pq_and_writes_rescorable_json(data_dir, tmp_path):
  from conftest import tiny_panoptic_config  # pylint: disable=g-import-not-at-top
  from segjax import train  # pylint: disable=g-import-not-at-top
  config = tiny_panoptic_config(data_dir, total_steps=4, **{"postprocess.center_threshold": 0.01})
  train.train_and_evaluate(config, str(tmp_path))
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    evals = [r for r in map(json.loads, f) if r["kind"] == "eval"]
  last = evals[-1]
  for key in ("miou", "mask_ap", "mask_ap50", "mask_ap75", "pq", "sq", "rq", "pq_things", "pq_stuff"):
    assert 0.0 <= last[key] <= 1.0, key
  train_line = open(os.path.join(tmp_path, "metrics.jsonl")).readline()
  assert "center_mse" in train_line and "offset_l1" in train_line
  folder = os.path.join(tmp_path, "eval", "4")
  rescored = score_files(os.path.join(folder, "instances_gt.json"), os.path.join(folder, "instances_results.json"))
  assert rescored["mask_ap"] == pytest.approx(last["mask_ap"], abs=0.005)
