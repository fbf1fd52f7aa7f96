"""Scores on each real format equal what the official tools compute: ground truth fed back scores 1,
the COCO panoptic files rescore alike with the COCO panoptic API (cityscapesscripts' copy), crowd
regions count as that API counts them, and Cityscapes mIoU equals cityscapesscripts' on the label
PNGs."""
import contextlib
import glob
import io
import json
import os

from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as panoptic_api
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as pixel_api
from cityscapesscripts.preparation import createPanopticImgs as create_panoptic
import numpy as np
from PIL import Image
import pytest

from conftest import tiny_config, tiny_panoptic_config
from fakes import ade20k, cityscapes, coco_panoptic, folder, pascal_voc
import oracle
from segjax import data, visualize
from segjax.evaluation import PanopticQuality
from segjax.evaluation.panoptic_files import PanopticFiles
from segjax.evaluation.panoptic_quality import VOID
from segjax.errors import UserError

FORMATS = {"coco_panoptic": coco_panoptic, "cityscapes": cityscapes, "ade20k": ade20k,
           "pascal_voc": pascal_voc, "folder": folder}
WITH_INSTANCES = ("coco_panoptic", "cityscapes", "folder")


def fake_config(name, tmp_path, instances):
  """A resolved tiny config on the fake files of dataset `name`, written under tmp_path."""
  root = str(tmp_path / "raw")
  FORMATS[name].write(root)
  settings = {"dataset.name": name, "dataset.manual_dir": root}
  config = (tiny_panoptic_config(str(tmp_path / "tfds"), **settings, **{"postprocess.min_stuff_area": 0})
            if instances else tiny_config(str(tmp_path / "tfds"), **settings))
  with config.unlocked():
    for key in ("num_classes", "thing_classes", "label_divisor", "label_ids"):
      config.dataset[key] = None  # from the descriptor
  config, names = data.resolve(config)
  with config.unlocked():
    config.input.eval_size = (64, 64)  # the fakes are small
  return config, names


def _api_pq(folder_path, gt_json=None, gt_folder=None):
  """The COCO panoptic API's PQ (cityscapesscripts' copy of panopticapi) on the predictions written
  in folder_path, against the ground truth written beside them or against `gt_json`/`gt_folder`."""
  gt_json = gt_json or os.path.join(folder_path, "panoptic_gt.json")
  gt_folder = gt_folder or os.path.join(folder_path, "panoptic_gt")
  with open(gt_json) as f:
    gt = json.load(f)
  with open(os.path.join(folder_path, "panoptic_pred.json")) as f:
    pred = {a["image_id"]: a for a in json.load(f)["annotations"]}
  categories = {c["id"]: c for c in gt["categories"]}
  pairs = [(a, pred[a["image_id"]]) for a in gt["annotations"]]
  with contextlib.redirect_stdout(io.StringIO()):
    stat = panoptic_api.pq_compute_single_core(0, pairs, str(gt_folder),
                                               os.path.join(folder_path, "panoptic_pred"), categories)
  return panoptic_api.average_pq(stat, categories)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_ground_truth_fed_back_scores_one(name, tmp_path):
  instances = name in WITH_INSTANCES
  config, names = fake_config(name, tmp_path, instances)
  scores = oracle.score(config, str(tmp_path / "run"), flaws=False, class_names=names, official_files=True)
  assert scores["miou"] == scores["pixel_acc"] == 1.0
  written = tmp_path / "run" / "eval" / "1"
  sizes = {e["file_name"]: e["semantic"].shape for e in FORMATS[name].write(str(tmp_path / "again"))["validation"]}
  assert len(set(sizes.values())) >= 2  # two image sizes in one split
  for file_name, size in sizes.items():  # label PNGs at each image's own size, named after it
    assert np.asarray(Image.open(written / "labels" / f"{file_name}_pred_labelIds.png")).shape == size
  if instances:
    with open(written / "instances_gt.json") as f:
      images = json.load(f)["images"]
    assert sorted((im["height"], im["width"]) for im in images) == sorted(sizes.values())
    assert scores["pq"] == 1.0 and scores["mask_ap"] == pytest.approx(1.0, abs=1e-12)
    api = _api_pq(str(tmp_path / "run" / "eval" / "1"))
    assert api["All"]["pq"] == 1.0 and api["All"]["n"] > 0


@pytest.mark.parametrize("flaws", [False, True])
def test_coco_panoptic_api_scores_the_predictions_against_cocos_own_files(flaws, tmp_path):
  """The panoptic predictions segjax writes, scored against the annotation JSON and PNGs of COCO
  itself (the fake files in COCO's layout), not against segjax's conversion of them."""
  config, names = fake_config("coco_panoptic", tmp_path, True)
  workdir = tmp_path / "run"
  scores = oracle.score(config, str(workdir), flaws=flaws, class_names=names, official_files=True)
  gt_json = tmp_path / "raw" / "annotations" / "panoptic_val2017.json"
  api = _api_pq(str(workdir / "eval" / "1"), gt_json, tmp_path / "raw" / "annotations" / "panoptic_val2017")
  with open(gt_json) as f:
    gt = json.load(f)
  assert scores["pq"] == pytest.approx(api["All"]["pq"], abs=1e-12)
  assert scores["pq_things"] == pytest.approx(api["Things"]["pq"], abs=1e-12)
  assert (scores["pq"] == 1.0) == (not flaws)
  # The COCO instance files name categories by COCO's own ids, as instances_val2017.json does.
  with open(workdir / "eval" / "1" / "instances_gt.json") as f:
    instances = json.load(f)
  with open(workdir / "eval" / "1" / "instances_results.json") as f:
    results = json.load(f)
  coco_things = {c["id"] for c in gt["categories"] if c["isthing"]}
  assert {c["id"] for c in instances["categories"]} == coco_things and len(coco_things) == 80
  used = {a["category_id"] for a in instances["annotations"]} | {r["category_id"] for r in results}
  # Dog, bed and stop sign are COCO ids 18, 65 and 13, but class indices 16, 59 and 11.
  assert used <= coco_things and {13, 18, 65} <= used and 59 not in used


def test_flawed_predictions_rescore_alike_with_the_official_tools(tmp_path):
  """Cityscapes, with crowd regions and ids above 255: the COCO panoptic API on the exported files
  gives segjax's PQ, and cityscapesscripts on the label PNGs gives segjax's mIoU."""
  config, names = fake_config("cityscapes", tmp_path, True)
  workdir = tmp_path / "run"
  scores = oracle.score(config, str(workdir), class_names=names, official_files=True)
  assert 0.2 < scores["pq"] < 0.99 and 0.2 < scores["miou"] < 0.99
  api = _api_pq(str(workdir / "eval" / "1"))
  assert scores["pq"] == pytest.approx(api["All"]["pq"], abs=1e-12)
  assert scores["pq_things"] == pytest.approx(api["Things"]["pq"], abs=1e-12)
  # Against Cityscapes' own panoptic ground truth, made from its gtFine files by cityscapesscripts.
  os.makedirs(tmp_path / "official" / "cityscapes_panoptic_val")
  with contextlib.redirect_stdout(io.StringIO()):
    create_panoptic.convert2panoptic(str(tmp_path / "raw" / "gtFine"), str(tmp_path / "official"),
                                     setNames=["val"])
  official = _api_pq(str(workdir / "eval" / "1"), tmp_path / "official" / "cityscapes_panoptic_val.json",
                     tmp_path / "official" / "cityscapes_panoptic_val")
  assert scores["pq"] == pytest.approx(official["All"]["pq"], abs=1e-12)
  assert scores["pq_stuff"] == pytest.approx(official["Stuff"]["pq"], abs=1e-12)

  preds = sorted(glob.glob(str(workdir / "eval" / "1" / "labels" / "*_pred_labelIds.png")))
  truths = [cityscapes.path(str(tmp_path / "raw"), "validation", os.path.basename(p)[:-len("_pred_labelIds.png")],
                            "gtFine_labelIds") for p in preds]
  assert len(preds) == 2
  args = pixel_api.args
  args.evalInstLevelScore, args.quiet, args.JSONOutput = False, True, False
  result = pixel_api.evaluateImgLists(preds, truths, args)
  assert scores["miou"] == pytest.approx(result["averageScoreClasses"], abs=1e-6)


# Hand-made crowd cases on one 4x8 image: classes 0 (stuff) and 1, 2 (things); divisor 1000.
# Ground truth: class-1 crowd (1000) on columns 0..3, a class-1 instance (1001) on columns 4..5,
# stuff (0) on columns 6..7.
TRUTH = np.array([[1000] * 4 + [1001] * 2 + [0] * 2] * 4)


def _pred(*segments):
  """A prediction: stuff everywhere, then (id, row slice, column slice) painted in order."""
  pred = np.zeros((4, 8), np.int64)
  for ids, rows, cols in segments:
    pred[rows, cols] = ids
  return pred


ALL = slice(None)
CASES = {
    # A class-1 segment on the crowd region of its own class: not a false positive.
    "own_crowd_excuses": (_pred((1001, ALL, slice(4, 6)), (1002, ALL, slice(0, 4))),
                          {"tp": [1, 1, 0], "fp": [0, 0, 0]}),
    # The same pixels predicted as class 2: crowd of another class excuses nothing.
    "other_crowd_does_not": (_pred((1001, ALL, slice(4, 6)), (2001, ALL, slice(0, 4))),
                             {"tp": [1, 1, 0], "fp": [0, 0, 1]}),
    # A class-1 segment of 20 pixels over the instance (8) and 3 crowd columns (12): IoU 8/20, as
    # crowd pixels are not taken out of a matched pair's IoU (8/8 if they were), so no match: a
    # miss, and no false positive (12/20 of it on its own class's crowd).
    "crowd_stays_in_iou": (_pred((1001, ALL, slice(1, 6))), {"tp": [1, 0, 0], "fp": [0, 0, 0]}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crowd_regions_count_as_the_coco_panoptic_api_counts_them(case, tmp_path):
  pred, counts = CASES[case]
  pq = PanopticQuality(3, (1, 2), 1000)
  pq.add(TRUTH, pred)
  assert pq.tp.tolist() == counts["tp"] and pq.fp.tolist() == counts["fp"]
  assert pq.fn.tolist() == [0, 1 - counts["tp"][1], 0]
  files = PanopticFiles(str(tmp_path), ["stuff", "a", "b"], (1, 2), (7, 8, 9), 1000)
  files.add(3, "image", TRUTH, pred)
  files.write()
  api = _api_pq(str(tmp_path))
  assert pq.result()["pq"] == pytest.approx(api["All"]["pq"], abs=1e-12)
  assert pq.result()["pq_things"] == pytest.approx(api["Things"]["pq"], abs=1e-12)


def test_void_truth_is_no_segment_in_the_files(tmp_path):
  truth = TRUTH.copy()
  truth[0, :] = VOID
  files = PanopticFiles(str(tmp_path), ["stuff", "a", "b"], (1, 2), (7, 8, 9), 1000)
  files.add(3, "image", truth, truth)
  files.write()
  with open(tmp_path / "panoptic_gt.json") as f:
    segments = json.load(f)["annotations"][0]["segments_info"]
  # (category, iscrowd, area, [x, y, width, height]) of stuff, the instance and the crowd region.
  assert sorted((s["category_id"], s["iscrowd"], s["area"], s["bbox"]) for s in segments) == [
      (7, 0, 6, [6, 1, 2, 3]), (8, 0, 6, [4, 1, 2, 3]), (8, 1, 12, [0, 1, 4, 3])]


def test_pictures_use_the_dataset_colours(tmp_path):
  config, _ = fake_config("cityscapes", tmp_path, True)
  picture = visualize.side_by_side(np.zeros((1, 1, 2, 3)), np.array([[[0, 255]]]), np.array([[[18, 13]]]),
                                   config.dataset.num_classes, config.dataset.ignore_label,
                                   config.dataset.colormap)
  # image | truth: road, ignored (white) | prediction: bicycle, car, in Cityscapes' own colours.
  assert picture[0, 0, 2:].tolist() == [[128, 64, 128], [255, 255, 255], [119, 11, 32], [0, 0, 142]]


def test_a_head_of_instances_on_a_folder_without_them_is_refused(tmp_path):
  folder.write(str(tmp_path / "raw"), instances=False)
  config = tiny_panoptic_config(str(tmp_path / "tfds"), **{"dataset.name": "folder",
                                                           "dataset.manual_dir": str(tmp_path / "raw")})
  with config.unlocked():
    for key in ("num_classes", "thing_classes", "label_divisor", "label_ids"):
      config.dataset[key] = None
  with pytest.raises(UserError, match="Dataset 'folder' has no instance labels, which head 'panoptic_deeplab' "
                                       "learns from; choose a semantic head"):
    data.resolve(config)
