"""What segjax needs to know about a dataset, declared once per dataset beside its tfds builder.

A file in segjax/data/datasets/ declares a `Descriptor` and registers it; `resolve` then fills every
config value that follows from the data (classes, things, ignore label, label divisor, sizes), so
the trainer, the evaluator and predict never name a dataset.

Every builder yields the same features, so one pipeline reads them all:
  image      (H, W, 3) uint8, in the dataset's own encoding
  semantic   (H, W, 1) uint8 PNG: class index per pixel, `ignore_label` where unlabelled
  instance   (H, W, 1) uint16 PNG, only where the dataset has instances: an id per object, 0 for
             none; pixels of a thing class with id 0 form that class's crowd region
  image_id   int64: the dataset's own image id (COCO's), else the example's index in its split
  file_name  the image's file name without folders or extension, for the official output files
"""
import dataclasses
import json
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds

from segjax.errors import UserError

_REGISTRY = {}


@dataclasses.dataclass(frozen=True)
class Descriptor:
  name: str  # what config.dataset.name says; "name/variant" picks a tfds builder config
  builder: str  # the tfds builder's registered name
  class_names: Optional[tuple] = None  # None: read from the built dataset's metadata (user folders)
  thing_classes: Optional[tuple] = None
  crop_size: tuple = (512, 512)  # (height, width) of training crops
  eval_size: tuple = (512, 512)  # what export serves and sliding windows assume; eval buckets by size
  ignore_label: int = 255
  label_divisor: int = 1000  # panoptic id = class * label_divisor + instance
  colormap: Optional[tuple] = None  # RGB per class; None: a generated palette
  official_ids: Optional[tuple] = None  # the dataset's own label id per class (Cityscapes labelIds)
  image_ids_by_name: bool = False  # its panoptic files name images by file name (Cityscapes), not id
  needs_manual_dir: bool = True  # False: the builder makes its data itself (the built-in scenes)


def register(descriptor):
  _REGISTRY[descriptor.name] = descriptor
  return descriptor


def get(name):
  """The descriptor of config.dataset.name ("cityscapes" or "synthetic_scenes/tiny")."""
  base = name.split("/")[0]
  if base not in _REGISTRY:
    raise UserError(f"Unknown dataset '{name}' (config.dataset.name); known: {', '.join(sorted(_REGISTRY))}.")
  return _REGISTRY[base]


def tfds_name(name):
  """The tfds name to build, keeping a "/variant" suffix of config.dataset.name."""
  base, _, variant = name.partition("/")
  builder = get(base).builder
  return f"{builder}/{variant}" if variant else builder


def features(image_format, instances=True):
  """The features every builder yields (see the module docstring)."""
  spec = {
      "image_id": tfds.features.Scalar(np.int64),
      "file_name": tfds.features.Text(),
      "image": tfds.features.Image(shape=(None, None, 3), encoding_format=image_format),
      "semantic": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8, encoding_format="png"),
  }
  if instances:
    spec["instance"] = tfds.features.Image(shape=(None, None, 1), dtype=np.uint16, encoding_format="png")
  return tfds.features.FeaturesDict(spec)


def metadata(class_names, thing_classes):
  return tfds.core.MetadataDict(class_names=list(class_names), thing_classes=[int(c) for c in thing_classes])


def read_json(path):
  """A JSON file of the dataset, or UserError naming it."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise UserError(f"Missing '{path}': the dataset's manual_dir must hold its official layout.") from e
  except json.JSONDecodeError as e:
    raise UserError(f"'{path}' is not valid JSON ({e}).") from e


def read_png(path, what="label"):
  """A PNG (or any Pillow image) as a NumPy array, or UserError naming the missing file."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      return np.asarray(im)
  except FileNotFoundError as e:
    raise UserError(f"Missing {what} file '{path}'; every image needs its {what} file.") from e
  except OSError as e:
    raise UserError(f"Cannot read {what} file '{path}' ({e}).") from e


def check_semantic(semantic, num_classes, ignore_label, path):
  """UserError naming `path` when a pixel's class is outside 0..num_classes-1 and not ignored."""
  bad = (semantic >= num_classes) & (semantic != ignore_label)
  if bad.any():
    raise UserError(f"Label {int(semantic[bad].max())} in '{path}' is outside the {num_classes} "
                    f"classes (0..{num_classes - 1}, ignore {ignore_label}); fix the file or the class list.")
  return semantic


def manual_root(dl_manager, contents):
  """The manual_dir as a path, or UserError saying what to put there (tfds only asserts)."""
  import os  # pylint: disable=g-import-not-at-top
  try:
    return os.fspath(dl_manager.manual_dir)
  except AssertionError as e:  # "Manual directory DIR does not exist or is empty. Create it ..."
    missing = str(e).splitlines()[0].split(". Create")[0].rstrip(".")
    raise UserError(f"{missing}; put {contents} there and set config.dataset.manual_dir to it "
                    "(or `tfds build --manual_dir=DIR`).") from e


def image_size(path):
  """(height, width) from the file header, without decoding the pixels."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      return im.height, im.width
  except FileNotFoundError as e:
    raise UserError(f"Missing image '{path}'.") from e
  except OSError as e:
    raise UserError(f"Cannot read image '{path}' ({e}).") from e


def read_label(path, size, what, expected, dtypes=(np.uint8,)):
  """A single-channel label PNG of its image's `size`, or UserError naming the file and saying that
  it must be `expected` (e.g. "an 8-bit palette PNG of class indices")."""
  label = read_png(path, what)
  if label.ndim != 2:
    raise UserError(f"'{path}' has {label.shape[-1]} channels; it must be {expected} (single-channel), "
                    "not a colour picture.")
  if label.dtype.type not in dtypes:
    raise UserError(f"'{path}' holds {label.dtype} values; it must be {expected}.")
  if label.shape != tuple(size):
    raise UserError(f"'{path}' is {label.shape[1]}x{label.shape[0]} but its image is {size[1]}x{size[0]}; "
                    "labels must be the size of their image.")
  return label
