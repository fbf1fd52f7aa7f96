"""mIoU, pixel accuracy, panoptic quality, panoptic fusion and COCO mask AP against hand-computed
answers: each case is small enough to check on paper, and its expected figure is not 0 or 1."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segjax.evaluation import CocoMaskEvaluator, PanopticQuality, panoptic_from_labels, score_files
from segjax.evaluation import confusion_matrix, semantic_metrics
from segjax.heads import panoptic_deeplab
from segjax.heads.head import VOID


def test_confusion_matrix_and_miou_by_hand():
  labels = np.array([[[0, 0, 1, 1], [2, 2, 255, 1]],
                     [[3, 3, 3, 3], [3, 3, 3, 3]]])  # image 2 is batch padding
  pred = np.array([[[0, 1, 1, 1], [2, 0, 3, 1]],
                   [[3, 3, 3, 3], [3, 3, 3, 3]]])
  confusion = np.asarray(confusion_matrix(jnp.asarray(pred), jnp.asarray(labels),
                                          jnp.array([True, False]), 4, 255))
  expected = np.zeros((4, 4), int)
  for truth, guess in [(0, 0), (0, 1), (1, 1), (1, 1), (2, 2), (2, 0), (1, 1)]:
    expected[truth, guess] += 1  # rows truth, columns prediction; the ignored pixel and image 2 skipped
  np.testing.assert_array_equal(confusion, expected)
  m = semantic_metrics(confusion, ["a", "b", "c", "d"])
  # IoU = tp / (truth + predicted - tp): a 1/(2+2-1), b 3/(3+4-3), c 1/(2+1-1); d is absent from
  # truth and prediction, so it has no IoU and stays out of the mean.
  assert m["iou_per_class"] == pytest.approx({"a": 1 / 3, "b": 3 / 4, "c": 1 / 2, "d": None})
  assert m["miou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
  assert m["pixel_acc"] == pytest.approx(5 / 7)


def test_a_class_predicted_but_absent_from_truth_counts_as_zero():
  confusion = np.array([[3, 1], [0, 0]])  # class 1 never in truth, predicted once
  m = semantic_metrics(confusion, ["a", "b"])
  assert m["iou_per_class"] == {"a": pytest.approx(3 / 4), "b": 0.0}
  assert m["miou"] == pytest.approx(3 / 8)


def test_empty_confusion_matrix_scores_zero_without_warnings():
  with np.errstate(all="raise"):
    m = semantic_metrics(np.zeros((3, 3), int), ["a", "b", "c"])
  assert m["miou"] == 0.0 and m["pixel_acc"] == 0.0
  assert m["iou_per_class"] == {"a": None, "b": None, "c": None}
  json.dumps(m, allow_nan=False)  # metrics.jsonl stays valid JSON


def _pq(pairs, num_classes=3, things=(1, 2)):
  pq = PanopticQuality(num_classes, things)
  for truth, pred in pairs:
    pq.add(np.array(truth), np.array(pred))
  return pq.result()


def test_pq_with_ious_between_one_half_and_one():
  image1 = ([[1001, 1001, 1001, 1001], [0, 0, 0, 0]],
            [[1001, 1001, 1001, 0], [0, 0, 0, 0]])  # thing IoU 3/4, stuff IoU 4/5
  image2 = ([[2001, 2001], [2001, 2001]],
            [[2001, 2001], [2002, 2002]])  # IoU 1/2 each: no match, 1 FN and 2 FP
  r = _pq([image1, image2])
  assert r["sq_things"] == pytest.approx(0.75 / 2)  # class 1: SQ 0.75, class 2: no TP -> 0
  assert r["rq_things"] == pytest.approx((1 + 0) / 2)
  assert r["pq_things"] == pytest.approx((0.75 + 0) / 2)
  assert r["pq_stuff"] == pytest.approx(0.8) and r["rq_stuff"] == 1.0
  assert r["pq"] == pytest.approx((0.8 + 0.75 + 0) / 3)


def test_pq_counts_each_unmatched_segment_once():
  # Class 1: two truths, one found (IoU 2/3), one missed; one false positive. TP 1, FN 1, FP 1.
  truth = [[1001, 1001, 0, 1002, 1002, 0, 0]]
  pred = [[1001, 1001, 1001, 0, 0, 1003, 1003]]
  r = _pq([(truth, pred)], num_classes=2, things=(1,))
  assert r["rq_things"] == pytest.approx(1 / (1 + 0.5 + 0.5))
  assert r["sq_things"] == pytest.approx(2 / 3)
  assert r["pq_things"] == pytest.approx(2 / 3 * 0.5)


def test_pq_iou_of_exactly_one_half_is_not_a_match():
  assert _pq([([[1001, 1001, 0, 0]], [[1001, 1001, 1001, 1001]])])["rq_things"] == 0.0


def test_pq_leaves_out_void_pixels_and_predictions_mostly_on_void():
  truth = panoptic_from_labels(np.array([[1, 1, 1, 255, 255, 255]]), np.array([[1, 1, 1, 0, 0, 0]]),
                               (1, 2), 255)
  np.testing.assert_array_equal(truth, [[1001, 1001, 1001, -1, -1, -1]])
  # 1001 spills onto one void pixel: IoU 2/3 counts it as union minus void = 3, not 4.
  # 1002 lies on void only: neither a match nor a false positive.
  r = _pq([(truth, [[1001, 1001, 0, 1001, 1002, 1002]])])
  assert r["pq_things"] == pytest.approx(2 / 3)
  assert r["rq_things"] == 1.0


def test_panoptic_ids_from_labels():
  semantic = np.array([[0, 1, 1, 2, 255]])
  instance = np.array([[0, 3, 0, 7, 0]])
  ids = panoptic_from_labels(semantic, instance, (1, 2), 255, label_divisor=1000)
  # Stuff: class * 1000; things: class * 1000 + the instance's number in the image (ids 3 and 7
  # become 1 and 2); a thing pixel without instance: its class's crowd region, class * 1000;
  # ignored: void.
  np.testing.assert_array_equal(ids, [[0, 1001, 1000, 2002, -1]])


def test_panoptic_fusion_by_hand():
  # Classes: 0 and 3 stuff, 1 and 2 things; min_stuff_area 3.
  semantic = jnp.array([[0, 0, 0, 1, 1, 2],
                        [0, 0, 3, 1, 1, 2],
                        [0, 0, 3, 0, 1, 1]])
  slots = np.zeros((3, 6), np.int32)  # slot + 1 per pixel
  slots[0:2, 3:5] = 1  # the class-1 block
  slots[2, 0:2] = 2  # an invalid slot: ignored whatever it covers
  slots[2, 4:6] = 3  # a small thing, 2 pixels: kept
  inst = {"instance_map": jnp.asarray(slots), "valid": jnp.array([True, False, True]),
          "classes": jnp.array([1, 0, 1]), "scores": jnp.array([0.9, 0.5, 0.8])}
  out = panoptic_deeplab.panoptic_fusion(semantic, inst, thing_classes=(1, 2), min_stuff_area=3,
                                    label_divisor=1000)
  v = VOID
  # Slot k of class c is c * 1000 + k + 1; stuff 3 has 2 pixels (< 3): void; the class-2 pixels no
  # instance claims: void; stuff 0 (8 pixels) keeps its id.
  np.testing.assert_array_equal(out, [[0, 0, 0, 1001, 1001, v],
                                      [0, 0, v, 1001, 1001, v],
                                      [0, 0, v, 0, 1003, 1003]])


def _square(h, w, y0, x0, size):
  m = np.zeros((h, w), bool)
  m[y0:y0 + size, x0:x0 + size] = True
  return m


def _coco(gt_masks, detections, directory):
  """CocoMaskEvaluator on one 16x16 image of class-1 truths; detections are (mask, score)."""
  instance = np.zeros((16, 16), np.int64)
  for k, m in enumerate(gt_masks, start=1):
    instance[m] = k
  semantic = (instance > 0).astype(np.int64)
  ev = CocoMaskEvaluator(["background", "thing"], (1,))
  slots = np.zeros((16, 16), np.int32)
  for k, (m, _) in enumerate(detections, start=1):
    slots[m] = k
  ev.add(7, semantic, instance, {"instance_map": slots,
                                 "valid": np.ones(len(detections), bool),
                                 "classes": np.ones(len(detections), np.int32),
                                 "scores": np.array([s for _, s in detections])})
  return ev.result(str(directory)), ev


def test_coco_mask_ap_depends_on_score_order(tmp_path):
  gt = [_square(16, 16, 0, 0, 4), _square(16, 16, 8, 8, 4)]
  false1, false2 = _square(16, 16, 0, 10, 3), _square(16, 16, 10, 0, 3)
  # Ranked hit, miss, hit, miss: precision 1 up to recall 1/2, then 2/3; COCO's 101 recall points:
  # 51 at precision 1 and 50 at 2/3.
  result, _ = _coco(gt, [(gt[0], 0.9), (false1, 0.8), (gt[1], 0.7), (false2, 0.6)], tmp_path / "a")
  expected = (51 + 50 * 2 / 3) / 101
  assert result["mask_ap"] == pytest.approx(expected)
  assert result["mask_ap50"] == result["mask_ap75"] == pytest.approx(expected)
  # The same detections ranked the other way: precision never above 1/2.
  result, _ = _coco(gt, [(gt[0], 0.6), (false1, 0.7), (gt[1], 0.8), (false2, 0.9)], tmp_path / "b")
  assert result["mask_ap"] == pytest.approx(0.5)


def test_coco_mask_ap_over_iou_thresholds(tmp_path):
  gt = _square(16, 16, 2, 2, 5)  # 25 pixels
  pred = gt.copy()
  pred[2, 2:7] = False
  pred[3, 2:4] = False  # 18 of them: IoU 0.72, a match at 0.50..0.70, not at 0.75..0.95
  result, ev = _coco([gt], [(pred, 0.9)], tmp_path)
  assert result == pytest.approx({"mask_ap": 0.5, "mask_ap50": 1.0, "mask_ap75": 0.0})
  # The files it wrote are plain COCO: pycocotools alone reads and scores them the same.
  gt_file, res_file = tmp_path / "instances_gt.json", tmp_path / "instances_results.json"
  coco = COCO(str(gt_file))
  assert len(coco.getAnnIds()) == 1 and coco.loadAnns(coco.getAnnIds())[0]["area"] == 25
  run = COCOeval(coco, coco.loadRes(str(res_file)), iouType="segm")
  run.evaluate()
  run.accumulate()
  run.summarize()
  assert run.stats[0] == pytest.approx(0.5)
  assert score_files(str(gt_file), str(res_file)) == result
  assert len(ev.results) == 1 and ev.results[0]["score"] == pytest.approx(0.9)
