"""Tiny COCO panoptic 2017 files in the official layout, and the examples the builder must make of them."""
import json
import os

import numpy as np
from PIL import Image

from segjax.data.datasets import coco_panoptic

# Class index of the categories used here: position by ascending id among the 133 (the test checks it).
CLASS = {1: 0, 13: 11, 18: 16, 23: 21, 65: 59, 72: 62, 149: 100, 187: 119, 193: 125, 199: 131}
_THINGS = {1, 13, 18, 23, 65, 72}

# Per split: (image id, height, width, grayscale JPEG, segments). A segment (segment id, category id,
# iscrowd, box (y0, y1, x0, x1)) is painted in this order over VOID (0), and segments_info keeps the
# order; category None paints VOID back. Ids above 65535 use all three PNG channels.
IMAGES = {
    "train": [
        (139, 24, 32, False, [
            (5000, 199, 0, (0, 24, 0, 28)),  # wall-other-merged; columns 28.. stay VOID
            (3000000, 1, 0, (4, 20, 2, 8)),  # person: instance 1
            (65537, 1, 1, (4, 20, 10, 16)),  # crowd of persons: instance 0
            (16777215, 72, 0, (2, 8, 20, 27)),  # tv, the largest id, RGB (255, 255, 255): instance 2
            (70000, 1, 0, (6, 22, 18, 26)),  # person over the tv: instance 3
        ]),
        (285, 32, 48, False, [
            (1, 187, 0, (0, 12, 0, 48)),  # sky-other-merged, RGB (1, 0, 0)
            (256, 193, 0, (12, 32, 0, 48)),  # grass-merged, RGB (0, 1, 0)
            (200000, 23, 0, (8, 28, 10, 30)),  # bear
            (200001, 23, 0, (14, 30, 26, 40)),  # bear touching the first
            (0, None, 0, (28, 32, 0, 6)),
        ]),
    ],
    "validation": [
        (632, 32, 48, True, [  # COCO has a few grayscale JPEGs
            (300, 65, 0, (0, 32, 0, 48)),  # bed
            (3 * 65536 + 7, 18, 0, (4, 16, 4, 20)),  # dog
            (5 * 65536, 18, 1, (18, 30, 4, 20)),  # crowd of dogs
            (9 * 65536 + 4 * 256 + 2, 18, 0, (18, 30, 24, 40)),  # dog
            (0, None, 0, (0, 4, 40, 48)),
        ]),
        (724, 24, 32, False, [
            (42, 149, 0, (12, 24, 0, 32)),  # road; rows 0..11 VOID but the sign
            (100001, 13, 0, (2, 10, 4, 12)),  # stop sign
        ]),
    ],
}
_FOLDERS = {"train": "train2017", "validation": "val2017"}


def write(root):
  """Writes IMAGES under root as COCO does; returns {split: [expected example, ...]}."""
  expected = {}
  for split, images in IMAGES.items():
    folder = _FOLDERS[split]
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations", f"panoptic_{folder}"), exist_ok=True)
    doc = {"info": {"description": "COCO 2017 Panoptic Dataset", "version": "1.0", "year": 2017},
           "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 1, "name": "By"}],
           "images": [], "annotations": [], "categories": categories()}
    expected[split] = []
    for image_id, height, width, gray, segments in images:
      name = f"{image_id:012d}"
      ids = np.zeros((height, width), np.int64)
      for segment_id, _, _, (y0, y1, x0, x1) in segments:
        ids[y0:y1, x0:x1] = segment_id
      rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
      Image.fromarray(rgb).save(os.path.join(root, "annotations", f"panoptic_{folder}", name + ".png"))
      pixels = _picture(height, width, image_id, gray)
      Image.fromarray(pixels[..., 0] if gray else pixels).save(
          os.path.join(root, folder, name + ".jpg"), quality=95)

      semantic = np.full((height, width), 255, np.uint8)
      instance = np.zeros((height, width), np.int64)
      infos, count = [], 0
      for segment_id, category, crowd, _ in segments:
        if category is None:
          continue
        mask = ids == segment_id
        ys, xs = np.nonzero(mask)
        infos.append({"id": segment_id, "category_id": category, "iscrowd": crowd, "area": int(mask.sum()),
                      "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]})
        semantic[mask] = CLASS[category]
        if category in _THINGS and not crowd:
          count += 1
          instance[mask] = count
      doc["images"].append({"license": 1, "file_name": name + ".jpg", "coco_url": "", "height": height,
                            "width": width, "date_captured": "2013-11-14 11:18:45", "flickr_url": "",
                            "id": image_id})
      doc["annotations"].append({"segments_info": infos, "file_name": name + ".png", "image_id": image_id})
      expected[split].append({"file_name": name, "image_id": image_id, "image": pixels,
                              "semantic": semantic, "instance": instance})
    with open(os.path.join(root, "annotations", f"panoptic_{folder}.json"), "w") as f:
      json.dump(doc, f)
  return expected


def categories():
  """The "categories" of the official JSONs: id, name, isthing (and a supercategory nothing reads)."""
  things = {i for i, _, _ in coco_panoptic.THINGS}
  return [{"supercategory": "thing" if i in things else "stuff", "isthing": int(i in things), "id": i,
           "name": name} for i, name, _ in coco_panoptic.CATEGORIES]


def _picture(height, width, image_id, gray):
  """A smooth picture, different per image, that JPEG keeps within a few levels."""
  y, x = np.mgrid[:height, :width]
  base = np.array([image_id % 200, image_id * 7 % 200, image_id * 13 % 200])
  pixels = (base + 2 * y[..., None] + x[..., None]).clip(0, 255).astype(np.uint8)
  return np.repeat(pixels[..., :1], 3, axis=-1) if gray else pixels
