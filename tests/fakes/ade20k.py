"""Tiny ADEChallengeData2016 files in the official layout, and the examples the builder must make of them."""
import os

import numpy as np
from PIL import Image

# Per split, written in an unsorted order: (number, height, width, grey, regions). A region
# (annotation value, box (y0, y1, x0, x1)) is painted in order over "other objects" (0).
IMAGES = {
    "train": [
        (2, 24, 32, False, [(1, (0, 12, 0, 32)), (3, (12, 24, 0, 32)), (13, (4, 20, 8, 16)),
                            (150, (20, 24, 28, 32))]),  # rows 0.. wall, sky below, a person, a flag
        (1, 40, 28, False, [(7, (20, 40, 0, 28)), (21, (24, 34, 4, 20)), (0, (0, 6, 0, 28))]),
    ],
    "validation": [
        (2, 40, 28, True, [(4, (0, 40, 0, 28)), (20, (10, 30, 6, 20)), (149, (0, 2, 0, 2))]),  # grey JPEG
        (1, 24, 32, False, [(2, (0, 24, 0, 32)), (3, (0, 8, 0, 32)), (88, (8, 24, 14, 16))]),
        (3, 24, 32, False, []),  # nothing but "other objects"
    ],
}
_FOLDERS = {"train": "training", "validation": "validation"}
_PREFIX = {"train": "ADE_train", "validation": "ADE_val"}


def path(root, split, name, kind):
  """The .jpg ("images") or .png ("annotations") file of image `name`."""
  ext = ".jpg" if kind == "images" else ".png"
  return os.path.join(root, "ADEChallengeData2016", kind, _FOLDERS[split], name + ext)


def write(root, images=None):
  """Writes `images` (IMAGES if None) under root as ADEChallengeData2016.zip unzips; returns {split:
  [expected, ...]}."""
  expected = {}
  rng = np.random.default_rng(1)
  for split, images in (images or IMAGES).items():
    expected[split] = []
    for number, height, width, grey, regions in images:
      name = f"{_PREFIX[split]}_{number:08d}"
      annotation = np.zeros((height, width), np.uint8)
      for value, (y0, y1, x0, x1) in regions:
        annotation[y0:y1, x0:x1] = value
      # Smooth pictures with a little noise: JPEG keeps them close, so decoding can be checked.
      ys, xs = np.mgrid[:height, :width]
      image = np.stack([ys * 5, xs * 7, (ys + xs) * 3], -1) + rng.integers(0, 20, (height, width, 3))
      image = Image.fromarray(image.astype(np.uint8))
      if grey:
        image = image.convert("L")
      for kind in ("images", "annotations"):
        os.makedirs(os.path.dirname(path(root, split, name, kind)), exist_ok=True)
      image.save(path(root, split, name, "images"), quality=95)
      Image.fromarray(annotation).save(path(root, split, name, "annotations"))  # 8-bit grey, mode "L"
      with Image.open(path(root, split, name, "images")) as im:
        decoded = np.asarray(im.convert("RGB"))
      semantic = np.where(annotation == 0, 255, annotation.astype(np.int64) - 1).astype(np.uint8)
      expected[split].append({"file_name": name, "image": decoded, "semantic": semantic, "instance": None,
                              "height": height, "width": width})
    expected[split].sort(key=lambda example: example["file_name"])
    for index, example in enumerate(expected[split]):
      example["image_id"] = index
  return expected
