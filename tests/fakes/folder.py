"""A tiny user folder for the segjax_folder builder, and the examples the builder must make of it."""
import json
import os

import numpy as np
from PIL import Image

CLASSES = [{"name": "background"}, {"name": "road"}, {"name": "car", "thing": True},
           {"name": "person", "thing": True}]
THINGS = (2, 3)

# Per split folder, in an unsorted order: (file name, height, width, picture mode, semantic mode,
# instance bits, regions). A region (class, instance id, box (y0, y1, x0, x1)) is painted in order over
# background (0) with id 0; class None is the ignore label.
IMAGES = {
    "train": [
        ("street.png", 24, 32, "RGB", "L", 16, [
            (1, 0, (12, 24, 0, 32)),  # road
            (2, 300, (2, 10, 2, 14)),  # car
            (2, 1000, (14, 22, 4, 12)),  # car touching the road
            (2, 0, (14, 22, 16, 20)),  # car pixels without an id: a crowd region
            (3, 65535, (2, 10, 20, 24)),  # person, the largest 16-bit id
            (1, 7, (22, 24, 28, 32)),  # road with an id: stuff, so no instance
            (None, 9, (0, 2, 26, 32)),  # ignored, with an id: no instance either
        ]),
        ("alley.jpg", 40, 28, "L", "P", 8, [  # a grey JPEG, a palette label, 8-bit ids
            (1, 0, (20, 40, 0, 28)),
            (3, 1, (4, 30, 4, 12)),
            (3, 2, (4, 30, 14, 22)),
        ]),
    ],
    "val": [
        ("b.png", 40, 28, "RGBA", "L", 16, [(2, 1000, (4, 20, 4, 20)), (None, 0, (30, 40, 0, 28))]),
        ("a.jpeg", 24, 32, "RGB", "L", 8, [(1, 0, (0, 24, 0, 32)), (3, 255, (4, 20, 10, 18))]),
    ],
}
_SPLITS = {"train": "train", "val": "validation"}


def path(root, folder, name, kind):
  """The picture ("images", name with its extension) or label PNG ("semantic", "instance") of name."""
  stem = os.path.splitext(name)[0]
  return os.path.join(root, kind, folder, name if kind == "images" else stem + ".png")


def write(root, ignore_label=None, instances=True):
  """Writes IMAGES under root (validation in val/); returns {split: [expected example, ...]}."""
  spec = {"classes": CLASSES}
  if ignore_label is not None:
    spec["ignore_label"] = ignore_label
  ignore = 255 if ignore_label is None else ignore_label
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "classes.json"), "w") as f:
    json.dump(spec, f)
  rng = np.random.default_rng(3)
  expected = {}
  for folder, images in IMAGES.items():
    split = _SPLITS[folder]
    expected[split] = []
    for name, height, width, mode, semantic_mode, bits, regions in images:
      semantic = np.zeros((height, width), np.uint8)
      ids = np.zeros((height, width), np.int64)
      for cls, instance_id, (y0, y1, x0, x1) in regions:
        semantic[y0:y1, x0:x1] = ignore if cls is None else cls
        ids[y0:y1, x0:x1] = instance_id
      picture = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
      picture = Image.fromarray(picture).convert(mode)  # from "RGBA"
      for kind in ("images", "semantic") + (("instance",) if instances else ()):
        os.makedirs(os.path.dirname(path(root, folder, name, kind)), exist_ok=True)
      picture.save(path(root, folder, name, "images"))
      label = Image.fromarray(semantic)  # mode "L"
      if semantic_mode == "P":
        label = Image.frombytes("P", (width, height), semantic.tobytes())
        label.putpalette([v for i in range(256) for v in (255 - i, i, 3 * i % 256)])
      label.save(path(root, folder, name, "semantic"))
      if instances:
        Image.fromarray(ids.astype(np.uint16 if bits == 16 else np.uint8)).save(
            path(root, folder, name, "instance"))
      with Image.open(path(root, folder, name, "images")) as im:
        decoded = np.asarray(im.convert("RGB"))
      stored = np.where(semantic == ignore, 255, semantic).astype(np.uint8)
      instance = np.where(np.isin(stored, THINGS), ids, 0).astype(np.uint16) if instances else None
      expected[split].append({"file_name": os.path.splitext(name)[0], "image": decoded, "semantic": stored,
                              "instance": instance, "height": height, "width": width})
    expected[split].sort(key=lambda example: example["file_name"])
    for index, example in enumerate(expected[split]):
      example["image_id"] = index
  return expected
