"""Tiny Cityscapes gtFine files in the official layout, and the examples the builder must make of them."""
import os

import numpy as np
from PIL import Image

# labelId -> train id, after cityscapesScripts' labels.py: written out again to check the builder's table.
TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
            26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
_THING_LABEL_IDS = {24, 25, 26, 27, 28, 31, 32, 33}

# Per split, written in an unsorted order: (city, sequence, frame, height, width, regions). A region
# (labelId, instanceIds value, box (y0, y1, x0, x1)) is painted in order over unlabelled (0). An
# instanceIds value below 1000 is the bare labelId: a crowd region where the class has instances.
IMAGES = {
    "train": [
        ("bochum", 0, 313, 24, 32, [
            (21, 21, (0, 24, 0, 32)),  # vegetation
            (31, 31002, (2, 10, 2, 14)),  # train
            (32, 32000, (12, 20, 2, 8)),  # motorcycle
            (27, 27000, (12, 22, 10, 18)),  # truck
            (28, 28000, (2, 12, 18, 30)),  # bus
            (17, 17, (14, 24, 20, 22)),  # pole
            (5, 5, (20, 24, 24, 32)),  # dynamic: ignored
        ]),
        ("aachen", 0, 19, 24, 32, [
            (23, 23, (0, 10, 0, 32)),  # sky
            (7, 7, (10, 20, 0, 32)),  # road; rows 20.. stay unlabelled (0)
            (26, 26001, (8, 18, 2, 12)),  # car
            (26, 26000, (10, 20, 10, 20)),  # car touching the other
            (26, 26, (12, 18, 22, 30)),  # car group: crowd
            (24, 24000, (2, 12, 24, 28)),  # person
        ]),
        ("aachen", 1, 19, 32, 48, [
            (11, 11, (0, 32, 0, 48)),  # building
            (1, 1, (26, 32, 0, 48)),  # ego vehicle: ignored
            (4, 4, (0, 4, 0, 8)),  # static: ignored
            (8, 8, (18, 26, 0, 48)),  # sidewalk
            (29, 29000, (4, 12, 2, 12)),  # caravan: has instances, but ignored
            (33, 33999, (14, 24, 4, 14)),  # bicycle, the largest instanceIds value
            (25, 25, (4, 16, 16, 24)),  # rider group: crowd
            (25, 25001, (6, 20, 26, 34)),  # rider
            (12, 12, (2, 10, 38, 46)),  # wall
            (13, 13, (10, 16, 38, 46)),  # fence
        ]),
    ],
    "validation": [
        ("lindau", 0, 19, 24, 32, [
            (22, 22, (0, 24, 0, 32)),  # terrain
            (19, 19, (2, 8, 2, 6)),  # traffic light
            (20, 20, (2, 8, 8, 12)),  # traffic sign
            (24, 24001, (10, 22, 4, 10)),  # person
            (24, 24, (10, 22, 12, 18)),  # person group: crowd
            (24, 24002, (10, 22, 18, 24)),  # person
        ]),
        ("frankfurt", 0, 294, 32, 48, [
            (7, 7, (0, 32, 0, 48)),  # road
            (6, 6, (0, 6, 0, 48)),  # ground: ignored
            (3, 3, (28, 32, 0, 24)),  # out of roi: ignored
            (26, 26123, (8, 20, 6, 20)),  # car
            (33, 33000, (16, 30, 24, 30)),  # bicycle
            (32, 32, (16, 30, 34, 44)),  # motorcycle group: crowd
        ]),
    ],
}
_FOLDERS = {"train": "train", "validation": "val"}


def write(root):
  """Writes IMAGES under root as Cityscapes does; returns {split: [expected example, ...]} in file order."""
  expected = {}
  rng = np.random.default_rng(0)
  for split, images in IMAGES.items():
    expected[split] = []
    for city, sequence, frame, height, width, regions in images:
      name = f"{city}_{sequence:06d}_{frame:06d}"
      label = np.zeros((height, width), np.uint8)
      instance = np.zeros((height, width), np.int64)
      for label_id, value, (y0, y1, x0, x1) in regions:
        label[y0:y1, x0:x1] = label_id
        instance[y0:y1, x0:x1] = value
      image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
      image_dir = os.path.join(root, "leftImg8bit", _FOLDERS[split], city)
      label_dir = os.path.join(root, "gtFine", _FOLDERS[split], city)
      os.makedirs(image_dir, exist_ok=True)
      os.makedirs(label_dir, exist_ok=True)
      Image.fromarray(image).save(os.path.join(image_dir, name + "_leftImg8bit.png"))
      Image.fromarray(label).save(os.path.join(label_dir, name + "_gtFine_labelIds.png"))  # 8-bit grey
      Image.fromarray(instance.astype(np.uint16)).save(  # 16-bit grey
          os.path.join(label_dir, name + "_gtFine_instanceIds.png"))
      Image.fromarray(label * 7).convert("RGB").save(os.path.join(label_dir, name + "_gtFine_color.png"))
      semantic = np.vectorize(lambda i: TRAIN_ID.get(int(i), 255))(label).astype(np.uint8)
      thing = np.isin(label, list(_THING_LABEL_IDS))
      expected[split].append({"file_name": name, "image": image, "semantic": semantic,
                              "instance": np.where(thing & (instance >= 1000), instance, 0)})
    expected[split].sort(key=lambda example: example["file_name"])
    for index, example in enumerate(expected[split]):
      example["image_id"] = index
  return expected


def path(root, split, name, kind):
  """The file of kind "leftImg8bit", "gtFine_labelIds" or "gtFine_instanceIds" of image name."""
  top = "leftImg8bit" if kind == "leftImg8bit" else "gtFine"
  return os.path.join(root, top, _FOLDERS[split], name.split("_")[0], f"{name}_{kind}.png")
