"""COCO mask AP through pycocotools, with masks RLE-encoded by pycocotools.mask.

The ground truth and the predictions it scores are written as COCO-format JSON, so anyone can
rescore them with their own COCO tools.
"""
import contextlib
import io
import json
import os

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def encode_mask(mask):
  """COCO RLE of a binary (H, W) mask, with its counts as text so it can go into JSON."""
  rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, order="K")))
  rle["counts"] = rle["counts"].decode("ascii")
  return rle


class CocoMaskEvaluator:
  """Collects ground-truth and predicted instance masks image by image, then runs COCOeval."""

  def __init__(self, class_names, thing_classes, label_ids=None):
    """label_ids: the dataset's own id of each class (COCO's category ids), used in the files."""
    self._ids = list(range(len(class_names))) if label_ids is None else [int(i) for i in label_ids]
    self.categories = [{"id": self._ids[c], "name": class_names[c]} for c in thing_classes]
    self._things = set(int(c) for c in thing_classes)
    self.images, self.annotations, self.results = [], [], []

  def add(self, image_id, semantic, instance, pred):
    """One image, cut to its own size. semantic, instance: (H, W) ground truth, where thing pixels
    of instance 0 are their class's crowd region; pred: instance_map (H, W) of slot + 1, and valid,
    classes, scores per slot (NumPy)."""
    image_id = int(image_id)
    h, w = semantic.shape
    self.images.append({"id": image_id, "height": h, "width": w})
    things = np.isin(semantic, list(self._things))
    regions = [(instance == k, 0) for k in np.unique(instance[things & (instance > 0)])]
    # COCO scores a detection on a crowd region as neither hit nor miss.
    regions += [(things & (instance == 0) & (semantic == c), 1) for c in np.unique(semantic[things & (instance == 0)])]
    for mask, crowd in regions:
      category = int(np.bincount(semantic[mask]).argmax())
      if category not in self._things:
        continue
      rle = encode_mask(mask)
      self.annotations.append({
          "id": len(self.annotations) + 1, "image_id": image_id, "category_id": self._ids[category],
          "segmentation": rle, "area": float(mask_utils.area(rle)),
          "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": crowd})
    slots = np.asfortranarray(pred["instance_map"])  # masks compared from it are Fortran-ordered: no copy
    for k in np.nonzero(pred["valid"])[0]:
      mask = slots == k + 1
      if mask.any():  # an instance found only in the padding, cut away, is no instance
        self.results.append({"image_id": image_id, "category_id": self._ids[int(pred["classes"][k])],
                             "segmentation": encode_mask(mask), "score": float(pred["scores"][k])})

  def result(self, directory=None):
    """mask_ap, mask_ap50, mask_ap75; with `directory`, scored from the JSON files written there.
    They are scored before they are renamed into place, whole: another eval of the same step (an
    --eval_only under another protocol) may be writing its own meanwhile."""
    if directory is None:
      gt = COCO()
      gt.dataset = {"images": self.images, "annotations": self.annotations, "categories": self.categories}
      with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
      return _score(gt, self.results)
    os.makedirs(directory, exist_ok=True)
    files = {}
    for name, content in (("instances_gt.json", {"images": self.images, "annotations": self.annotations,
                                                 "categories": self.categories}),
                          ("instances_results.json", self.results)):
      path = os.path.join(directory, name)
      with open(f"{path}.{os.getpid()}.tmp", "w") as f:
        json.dump(content, f)
      files[f.name] = path
    scores = score_files(*files)
    for written, path in files.items():
      os.replace(written, path)
    return scores


def score_files(gt_path, results_path):
  """COCO mask AP of a results JSON against a ground-truth JSON, as anyone would compute it."""
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(gt_path)
  with open(results_path) as f:
    return _score(gt, json.load(f))


def _score(gt, results):
  if not results or not gt.dataset["annotations"]:
    return {"mask_ap": 0.0, "mask_ap50": 0.0, "mask_ap75": 0.0}
  with contextlib.redirect_stdout(io.StringIO()):
    dt = gt.loadRes(results)
    ev = COCOeval(gt, dt, iouType="segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return {"mask_ap": float(ev.stats[0]), "mask_ap50": float(ev.stats[1]), "mask_ap75": float(ev.stats[2])}
