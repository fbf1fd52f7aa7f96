"""Tiny VOC2012 segmentation files in the official layout, and the examples the builder must make of them."""
import os

import numpy as np
from PIL import Image


def voc_palette():
  """256 RGB colours: bit k of the index is bit 7 - k // 3 of channel k % 3 (VOCdevkit's labelcolormap)."""
  index = np.arange(256)
  colours = np.zeros((256, 3), np.int64)
  for k in range(24):
    colours[:, k % 3] |= ((index >> k) & 1) << (7 - k // 3)
  return colours.astype(np.uint8)


# Per split, in list-file order (not sorted): (stem, height, width, objects). An object (class, box
# (y0, y1, x0, x1)) is painted in order over background (0) with a 1-pixel border of 255 around it.
IMAGES = {
    "train": [
        ("2007_000039", 40, 28, [(20, (4, 16, 4, 20)), (15, (20, 36, 6, 14))]),  # train, person
        ("2007_000032", 24, 32, [(1, (2, 10, 2, 30)), (15, (12, 22, 4, 10)), (15, (12, 22, 14, 20))]),
    ],
    "validation": [
        ("2007_000033", 24, 32, [(1, (3, 20, 3, 29))]),  # aeroplane
        ("2007_000063", 40, 28, [(8, (5, 25, 5, 20)), (12, (26, 38, 2, 26))]),  # cat, dog
        ("2008_000002", 24, 32, []),  # all background
    ],
}
_UNLISTED = ("2007_000027", 24, 32, [])  # a detection-only image: a JPEG with no segmentation


def path(root, name, kind):
  """The JPEGImages .jpg or SegmentationClass .png of image `name`."""
  ext = ".jpg" if kind == "JPEGImages" else ".png"
  return os.path.join(root, "VOCdevkit", "VOC2012", kind, name + ext)


def list_path(root, split):
  name = {"train": "train.txt", "validation": "val.txt"}[split]
  return os.path.join(root, "VOCdevkit", "VOC2012", "ImageSets", "Segmentation", name)


def write(root):
  """Writes IMAGES under root as VOCtrainval_11-May-2012.tar untars; returns {split: [expected, ...]}."""
  rng = np.random.default_rng(2)
  for kind in ("JPEGImages", "SegmentationClass"):
    os.makedirs(os.path.dirname(path(root, "x", kind)), exist_ok=True)
  os.makedirs(os.path.dirname(list_path(root, "train")), exist_ok=True)
  expected = {}
  for split, images in IMAGES.items():
    expected[split] = []
    for index, (stem, height, width, objects) in enumerate(images):
      label = np.zeros((height, width), np.uint8)
      for cls, (y0, y1, x0, x1) in objects:
        label[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = 255  # the "void" outline VOC draws
        label[y0:y1, x0:x1] = cls
      ys, xs = np.mgrid[:height, :width]
      image = np.stack([ys * 6, xs * 4, 200 - ys * 2], -1) + rng.integers(0, 20, (height, width, 3))
      Image.fromarray(image.astype(np.uint8)).save(path(root, stem, "JPEGImages"), quality=95)
      png = Image.frombytes("P", (width, height), label.tobytes())
      png.putpalette(voc_palette().flatten().tolist())
      png.save(path(root, stem, "SegmentationClass"))
      with Image.open(path(root, stem, "JPEGImages")) as im:
        decoded = np.asarray(im.convert("RGB"))
      expected[split].append({"file_name": stem, "image_id": index, "image": decoded, "semantic": label,
                              "instance": None, "height": height, "width": width})
    with open(list_path(root, split), "w") as f:
      f.write("".join(stem + "\n" for stem, *_ in images))
  with open(os.path.join(os.path.dirname(list_path(root, "train")), "trainval.txt"), "w") as f:
    f.write("".join(stem + "\n" for split in ("train", "validation") for stem, *_ in IMAGES[split]))
  stem, height, width, _ = _UNLISTED
  Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(path(root, stem, "JPEGImages"))
  return expected
