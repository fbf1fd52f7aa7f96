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


def encode_ids(id_map, ids):
  """{k: encode_mask(id_map == k)} for each k of `ids` present in the (H, W) map, from one pass over it.

  An image's masks are disjoint, so the runs of equal ids down the columns (COCO's pixel order) hold
  every mask's run lengths: N masks cost one pass, not N, and pycocotools compresses the counts into
  the same RLE its encoder writes."""
  id_map = np.asarray(id_map)
  h, w = id_map.shape
  flat = id_map.ravel(order="F")
  starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
  ends = np.append(starts[1:], flat.size)
  order = np.argsort(flat[starts], kind="stable")  # runs grouped by id, in pixel order within each
  values = flat[starts][order]
  wanted = np.asarray(ids).reshape(-1)
  first, last = np.searchsorted(values, wanted, "left"), np.searchsorted(values, wanted, "right")
  present, counts = [], []
  for k, a, b in zip(wanted.tolist(), first, last):
    if a == b:
      continue
    s, e = starts[order[a:b]], ends[order[a:b]]
    runs = np.empty(2 * len(s) + 1, np.uint32)  # zeros before each run, the run, zeros after the last
    runs[0:-1:2] = s - np.concatenate(([0], e[:-1]))
    runs[1::2] = e - s
    runs[-1] = flat.size - e[-1]
    present.append(k)
    counts.append({"counts": runs if runs[-1] else runs[:-1], "size": [h, w]})
  rles = mask_utils.frPyObjects(counts, h, w) if counts else []
  for rle in rles:
    rle["counts"] = rle["counts"].decode("ascii")
  return dict(zip(present, rles))


def _ranks(values, keys):
  """1 + the index of each of `values` in the sorted unique int `keys`, 0 where absent: a table
  lookup when the values are small non-negative ints (class indices, PNG instance ids)."""
  values = np.asarray(values)
  if not keys.size:
    return np.zeros(values.shape, np.int64)
  if values.size and values.min() >= 0 and values.max() < 1 << 22:
    table = np.zeros(int(max(values.max(), keys.max())) + 1, np.int64)
    table[keys] = np.arange(1, keys.size + 1)
    return table[values]
  index = np.minimum(np.searchsorted(keys, values), keys.size - 1)
  return np.where(keys[index] == values, index + 1, 0)


class CocoMaskEvaluator:
  """Collects ground-truth and predicted instance masks image by image, then runs COCOeval."""

  def __init__(self, class_names, thing_classes, label_ids=None):
    """label_ids: the dataset's own id of each class (COCO's category ids), used in the files."""
    self._ids = list(range(len(class_names))) if label_ids is None else [int(i) for i in label_ids]
    self.categories = [{"id": self._ids[c], "name": class_names[c]} for c in thing_classes]
    self._things = set(int(c) for c in thing_classes)
    self._thing_list = sorted(self._things)
    self.images, self.annotations, self.results = [], [], []

  def add(self, image_id, semantic, instance, pred):
    """One image, cut to its own size. semantic, instance: (H, W) ground truth, where thing pixels
    of instance 0 are their class's crowd region; pred: instance_map (H, W) of slot + 1, and valid,
    classes, scores per slot (NumPy)."""
    self.merge(self.score(image_id, semantic, instance, pred))

  def score(self, image_id, semantic, instance, pred):
    """`add`'s work for one image, apart from the images before it: its image entry, its
    ground-truth annotations (without ids, which `merge` numbers) and its results. Reads no state
    that `merge` changes, so images can be scored in any process and merged in order."""
    image_id = int(image_id)
    semantic, instance = np.asarray(semantic), np.asarray(instance)
    h, w = semantic.shape
    things = np.isin(semantic, self._thing_list)
    # Every region in one map: instance k (all its pixels) -> 1 + its rank among the ids on things,
    # then each thing class's crowd region (its pixels of instance 0): COCO scores a detection on
    # one as neither hit nor miss.
    ids = np.unique(instance[things & (instance > 0)])
    crowd = things & (instance == 0)
    crowd_classes = np.unique(semantic[crowd])
    regions = _ranks(instance, ids)
    regions[crowd] = ids.size + _ranks(semantic[crowd], crowd_classes)
    count = ids.size + crowd_classes.size
    # Each region's category: its most frequent class (the smallest on a tie, as argmax picks).
    depth = int(semantic.max(initial=0)) + 1
    classes = np.bincount((regions * depth + semantic).ravel(), minlength=(count + 1) * depth)
    categories = classes.reshape(count + 1, depth)[1:].argmax(1)
    kept = [r for r in range(1, count + 1) if int(categories[r - 1]) in self._things]
    rles = encode_ids(regions, kept)
    # Area and box one RLE at a time: pycocotools' area() of a list fails past 255 RLEs under NumPy 2.
    annotations = [{"image_id": image_id, "category_id": self._ids[int(categories[r - 1])], "segmentation": rles[r],
                    "area": float(mask_utils.area(rles[r])), "bbox": [float(v) for v in mask_utils.toBbox(rles[r])],
                    "iscrowd": int(r > ids.size)} for r in kept]
    valid = np.nonzero(pred["valid"])[0]
    found = encode_ids(pred["instance_map"], valid + 1)  # an instance found only in the cut-away padding is none
    results = [{"image_id": image_id, "category_id": self._ids[int(pred["classes"][k])],
                "segmentation": found[k + 1], "score": float(pred["scores"][k])}
               for k in valid.tolist() if k + 1 in found]
    return {"image": {"id": image_id, "height": h, "width": w}, "annotations": annotations, "results": results}

  def merge(self, scored):
    """Adds what `score` returned for the next image; annotation ids count on from the last image's."""
    self.images.append(scored["image"])
    for annotation in scored["annotations"]:
      self.annotations.append({"id": len(self.annotations) + 1, **annotation})
    self.results.extend(scored["results"])

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
