"""Pascal VOC 2012 segmentation, read from VOCdevkit/VOC2012: 21 classes, semantic only."""
import os

import numpy as np
import tensorflow_datasets as tfds

from segjax.data import dataset
from segjax.errors import UserError

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)


def palette(n=256):
  """The VOC colour of each index: the bits of the index spread over R, G and B, high bits first."""
  colours = np.zeros((n, 3), np.uint8)
  for index in range(n):
    c, rgb = index, [0, 0, 0]
    for bit in range(7, -1, -1):
      for channel in range(3):
        rgb[channel] |= ((c >> channel) & 1) << bit
      c >>= 3
    colours[index] = rgb
  return colours


# VOC images are at most 500x500.
DESCRIPTOR = dataset.register(dataset.Descriptor(
    name="pascal_voc", builder="segjax_pascal_voc", class_names=CLASS_NAMES, thing_classes=(),
    crop_size=(512, 512), eval_size=(512, 512), ignore_label=255,
    colormap=tuple(tuple(int(v) for v in c) for c in palette(len(CLASS_NAMES)))))

_SPLITS = {"train": "train.txt", "validation": "val.txt"}


class SegjaxPascalVoc(tfds.core.GeneratorBasedBuilder):
  """VOC 2012 segmentation: 1464 training and 1449 validation images, 20 object classes and background."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "SegmentationClass palette indices as labels, 255 (borders) ignored."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/, untar "
      "it and pass the folder holding VOCdevkit/ (or VOCdevkit/VOC2012 itself) as manual_dir.")

  def _info(self):
    return self.dataset_info_from_configs(
        features=dataset.features("jpeg", instances=False),
        description=__doc__,
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
        metadata=dataset.metadata(CLASS_NAMES, ()),
    )

  def _split_generators(self, dl_manager):
    root = find_root(dataset.manual_root(dl_manager, "VOCdevkit/"))
    # Checking every file first reports a missing one before any example is written.
    return {split: self._generate_examples(_examples(root, name)) for split, name in _SPLITS.items()}

  def _generate_examples(self, examples):
    for index, (stem, image_path, label_path) in enumerate(examples):
      yield stem, {
          "image_id": index,
          "file_name": stem,
          "image": image_path,  # the original JPEG bytes, not re-encoded
          "semantic": _read_label(label_path, dataset.image_size(image_path))[..., None],
      }


def find_root(manual_dir):
  """VOC2012 under manual_dir: VOCdevkit/VOC2012, VOC2012, or manual_dir itself."""
  for root in (os.path.join(manual_dir, "VOCdevkit", "VOC2012"), os.path.join(manual_dir, "VOC2012"),
               manual_dir):
    if os.path.isdir(os.path.join(root, "ImageSets")):
      return root
  raise UserError(f"Missing folder '{os.path.join(manual_dir, 'VOCdevkit', 'VOC2012', 'ImageSets')}': "
                  f"manual_dir must hold VOCdevkit/VOC2012 as untarred from VOCtrainval_11-May-2012.tar.")


def _examples(root, list_name):
  """(stem, image path, label path) in the order of the split's list file."""
  list_path = os.path.join(root, "ImageSets", "Segmentation", list_name)
  try:
    with open(list_path) as f:
      stems = [line.strip() for line in f if line.strip()]
  except FileNotFoundError as e:
    raise UserError(f"Missing list file '{list_path}': VOC2012 must hold ImageSets/Segmentation/"
                    f"train.txt and val.txt.") from e
  examples = []
  for stem in stems:
    paths = (os.path.join(root, "JPEGImages", stem + ".jpg"),
             os.path.join(root, "SegmentationClass", stem + ".png"))
    for path in paths:
      if not os.path.isfile(path):
        raise UserError(f"Missing file '{path}' of '{stem}', listed in '{list_path}'.")
    examples.append((stem,) + paths)
  return examples


def _read_label(path, size):
  # A palette PNG reads as its indices, which are the classes; converted to RGB it would give colours.
  label = dataset.read_label(path, size, "label", "an 8-bit palette PNG of class indices as in SegmentationClass/")
  return dataset.check_semantic(label, len(CLASS_NAMES), DESCRIPTOR.ignore_label, path)
