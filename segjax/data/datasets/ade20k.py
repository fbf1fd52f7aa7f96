"""ADE20K SceneParsing (ADEChallengeData2016), read from its official folders: 150 classes, semantic only."""
import os

import numpy as np
import tensorflow_datasets as tfds

from segjax.data import dataset
from segjax.errors import UserError

# objectInfo150.txt order, the first name of each synonym list ("television receiver" as in
# mmsegmentation); annotation value k is class k - 1.
CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
    "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)

# Large images were scaled to a short side of 512, small ones kept. The largest validation image,
# ADE_val_00001157, is 1600x1600; every other one fits in 1243 (CSAILVision's validation.odgt).
DESCRIPTOR = dataset.register(dataset.Descriptor(
    name="ade20k", builder="segjax_ade20k", class_names=CLASS_NAMES, thing_classes=(),
    crop_size=(512, 512), eval_size=(1600, 1600),
    official_ids=tuple(range(1, len(CLASS_NAMES) + 1))))  # label 0 is "other"

_FOLDER = "ADEChallengeData2016"
_SPLITS = {"train": "training", "validation": "validation"}
# 0 is "other objects", left out of the benchmark: it becomes the ignore label and 1..150 become 0..149.
_SHIFT = ((np.arange(256) - 1) % 256).astype(np.uint8)


class SegjaxAde20k(tfds.core.GeneratorBasedBuilder):
  """ADE20K scenes: 20210 training and 2000 validation images, each pixel one of 150 classes or ignored."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "ADEChallengeData2016, JPEGs as they are; labels 1..150 -> 0..149, 0 -> 255."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download ADEChallengeData2016.zip from http://sceneparsing.csail.mit.edu, unzip it and pass the "
      "folder holding ADEChallengeData2016/ (or that folder itself) as manual_dir.")

  def _info(self):
    return self.dataset_info_from_configs(
        features=dataset.features("jpeg", instances=False),
        description=__doc__,
        homepage="http://sceneparsing.csail.mit.edu",
        metadata=dataset.metadata(CLASS_NAMES, ()),
    )

  def _split_generators(self, dl_manager):
    root = find_root(dataset.manual_root(dl_manager, "ADEChallengeData2016/"))
    # Pairing every file first reports a missing annotation before any example is written.
    return {split: self._generate_examples(_pairs(root, folder)) for split, folder in _SPLITS.items()}

  def _generate_examples(self, pairs):
    for index, (stem, image_path, label_path) in enumerate(pairs):
      yield stem, {
          "image_id": index,
          "file_name": stem,
          "image": image_path,  # the original JPEG bytes, not re-encoded
          "semantic": _read_label(label_path, dataset.image_size(image_path))[..., None],
      }


def find_root(manual_dir):
  """ADEChallengeData2016 inside manual_dir, or manual_dir itself when it is that folder."""
  for root in (os.path.join(manual_dir, _FOLDER), manual_dir):
    if os.path.isdir(os.path.join(root, "images")):
      return root
  raise UserError(f"Missing folder '{os.path.join(manual_dir, _FOLDER, 'images')}': manual_dir must hold "
                  f"{_FOLDER}/ unzipped from ADEChallengeData2016.zip.")


def _pairs(root, folder):
  """(stem, image path, annotation path) of every image of a split, sorted by file name."""
  image_dir, label_dir = (os.path.join(root, kind, folder) for kind in ("images", "annotations"))
  for path in (image_dir, label_dir):
    if not os.path.isdir(path):
      raise UserError(f"Missing folder '{path}': {_FOLDER} must hold images/ and annotations/, each "
                      f"with training/ and validation/.")
  stems = sorted(os.path.splitext(f)[0] for f in os.listdir(image_dir) if f.lower().endswith(".jpg"))
  if not stems:
    raise UserError(f"No .jpg images in '{image_dir}'.")
  labels = set(os.listdir(label_dir))
  for stem in stems:
    if stem + ".png" not in labels:
      raise UserError(f"Missing annotation '{os.path.join(label_dir, stem + '.png')}' of image "
                      f"'{os.path.join(image_dir, stem + '.jpg')}'; every image needs its annotation.")
  return [(s, os.path.join(image_dir, s + ".jpg"), os.path.join(label_dir, s + ".png")) for s in stems]


def _read_label(path, size):
  raw = dataset.read_label(path, size, "annotation", f"an 8-bit grayscale PNG of values 0..150, as in {_FOLDER}")
  if raw.max() > len(CLASS_NAMES):
    raise UserError(f"Label {int(raw.max())} in '{path}' is above 150: ADE20K annotations hold 0 "
                    f"(unlabelled) and the classes 1..150.")
  return _SHIFT[raw]
