"""Predictions and ground truth in the COCO panoptic format (a PNG per image + one JSON), so the
official panopticapi (or cityscapesscripts' copy of it) rescores what segjax scored.

In the PNGs a segment's id is R + 256 G + 256^2 B, and 0 is void. A ground-truth thing class's
pixels without an instance are its crowd region: one segment with `iscrowd: 1`.
"""
import json
import os

import numpy as np
from PIL import Image

from segjax.evaluation.panoptic_quality import VOID, unique_ids


def encode_segments(ids, label_divisor, label_ids, things):
  """An (H, W) panoptic id map (class * label_divisor + instance, VOID -1) as an (H, W, 3) uint8
  PNG array and its segments_info; segments are numbered 1.. in the order of their ids."""
  uniques, index, area = unique_ids(ids)
  height, width = ids.shape
  segment = np.where(uniques == VOID, 0, np.cumsum(uniques != VOID))  # 1..N, void 0
  png = segment[index].reshape(height, width)
  rgb = np.zeros((height, width, 3), np.uint8)
  for channel in range(3 if png.max(initial=0) > 255 else 1):  # R, G, B: bytes 0, 1, 2 of the number
    rgb[..., channel] = (png >> 8 * channel) & 255
  # Area and box of every segment in one pass over the pixels: the rows and the columns it is on.
  index = index.reshape(height, width)
  rows = np.bincount((index * height + np.arange(height)[:, None]).ravel(), minlength=len(uniques) * height)
  cols = np.bincount((index * width + np.arange(width)).ravel(), minlength=len(uniques) * width)
  rows, cols = rows.reshape(len(uniques), height) > 0, cols.reshape(len(uniques), width) > 0
  y0, x0 = rows.argmax(1), cols.argmax(1)
  y1, x1 = height - rows[:, ::-1].argmax(1), width - cols[:, ::-1].argmax(1)
  segments = []
  for k, value in enumerate(uniques):
    if value == VOID:
      continue
    cls = int(value // label_divisor)
    segments.append({
        "id": int(segment[k]), "category_id": int(label_ids[cls]), "area": int(area[k]),
        "bbox": [int(x0[k]), int(y0[k]), int(x1[k] - x0[k]), int(y1[k] - y0[k])],
        "iscrowd": int(bool(things[cls]) and value % label_divisor == 0)})
  return rgb, segments


class PanopticFiles:
  """Collects predicted and true panoptic maps image by image; `write()` saves both sets.

  DIR/panoptic_{gt,pred}/<file_name>.png and DIR/panoptic_{gt,pred}.json.
  """

  def __init__(self, directory, class_names, thing_classes, label_ids, label_divisor):
    self.directory, self.label_divisor, self.label_ids = directory, label_divisor, label_ids
    self.things = np.zeros(len(class_names), bool)
    self.things[list(thing_classes)] = True
    self.categories = [{"id": int(label_ids[c]), "name": name, "isthing": int(self.things[c])}
                       for c, name in enumerate(class_names)]
    self.images, self.annotations = [], {"gt": [], "pred": []}
    for which in self.annotations:
      os.makedirs(os.path.join(directory, f"panoptic_{which}"), exist_ok=True)

  def add(self, image_id, file_name, truth, pred):
    """truth, pred: one image's (H, W) panoptic id maps, cut to its size; image_id: the dataset's
    own id, an int (COCO) or a name (Cityscapes)."""
    self.merge(self.save(image_id, file_name, truth, pred))

  def save(self, image_id, file_name, truth, pred):
    """`add`'s work for one image, apart from the images before it: writes its two PNGs and returns
    its entries for the JSON files, which `merge` collects in order."""
    h, w = truth.shape
    image_id = image_id if isinstance(image_id, str) else int(image_id)
    saved = {"image": {"id": image_id, "file_name": file_name, "height": h, "width": w}}
    for which, ids in (("gt", truth), ("pred", pred)):
      rgb, segments = encode_segments(np.asarray(ids, np.int64), self.label_divisor, self.label_ids,
                                      self.things)
      Image.fromarray(rgb).save(os.path.join(self.directory, f"panoptic_{which}", f"{file_name}.png"))
      saved[which] = {"image_id": image_id, "file_name": f"{file_name}.png", "segments_info": segments}
    return saved

  def merge(self, saved):
    """Adds the JSON entries `save` returned for the next image."""
    self.images.append(saved["image"])
    for which in self.annotations:
      self.annotations[which].append(saved[which])

  def write(self):
    for which, annotations in self.annotations.items():
      with open(os.path.join(self.directory, f"panoptic_{which}.json"), "w") as f:
        json.dump({"images": self.images, "annotations": annotations, "categories": self.categories}, f)
