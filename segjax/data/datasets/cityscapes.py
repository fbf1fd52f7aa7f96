"""Cityscapes gtFine read from its official files in tfds' manual_dir: the 19 evaluated classes."""
import glob
import os

import numpy as np
import tensorflow_datasets as tfds

from segjax.data import dataset
from segjax.errors import UserError

# The 19 classes by train id: (name, Cityscapes labelId, colour), from cityscapesScripts' labels.py.
CLASSES = (
    ("road", 7, (128, 64, 128)), ("sidewalk", 8, (244, 35, 232)), ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)), ("fence", 13, (190, 153, 153)), ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)), ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)), ("terrain", 22, (152, 251, 152)), ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)), ("rider", 25, (255, 0, 0)), ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)), ("bus", 28, (0, 60, 100)), ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)), ("bicycle", 33, (119, 11, 32)),
)
THING_CLASSES = tuple(range(11, 19))  # person .. bicycle
_MAX_LABEL_ID = 33  # labelIds PNGs hold 0..33; license plate (-1) is never drawn

DESCRIPTOR = dataset.register(dataset.Descriptor(
    name="cityscapes", builder="segjax_cityscapes", class_names=tuple(name for name, _, _ in CLASSES),
    thing_classes=THING_CLASSES, crop_size=(512, 1024), eval_size=(1024, 2048), ignore_label=255,
    label_divisor=1000, colormap=tuple(colour for _, _, colour in CLASSES),
    official_ids=tuple(label_id for _, label_id, _ in CLASSES), image_ids_by_name=True))

# labelId -> train id; the 15 labelIds that are not evaluated (void, caravan, trailer, ...) -> 255.
_TRAIN_ID = np.full(256, 255, np.uint8)
_TRAIN_ID[[label_id for _, label_id, _ in CLASSES]] = np.arange(len(CLASSES))
_IS_THING = np.zeros(256, bool)
_IS_THING[list(THING_CLASSES)] = True

_SPLITS = {"train": "train", "validation": "val"}
_IMAGE_SUFFIX = "_leftImg8bit.png"


class SegjaxCityscapes(tfds.core.GeneratorBasedBuilder):
  """Cityscapes fine annotations as train ids; instance ids kept as labelId*1000+k, crowd pixels 0."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "gtFine train and val, 19 classes, instances of the 8 thing classes."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  From https://www.cityscapes-dataset.com/downloads/ unpack leftImg8bit_trainvaltest.zip and
  gtFine_trainvaltest.zip into manual_dir, keeping these paths:
    leftImg8bit/{train,val}/CITY/CITY_SEQ_FRAME_leftImg8bit.png
    gtFine/{train,val}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png
    gtFine/{train,val}/CITY/CITY_SEQ_FRAME_gtFine_instanceIds.png
  """

  def _info(self):
    return self.dataset_info_from_configs(
        features=dataset.features("png"),
        description=__doc__,
        homepage="https://www.cityscapes-dataset.com",
        metadata=dataset.metadata(DESCRIPTOR.class_names, THING_CLASSES),
    )

  def _split_generators(self, dl_manager):
    root = dataset.manual_root(dl_manager, "leftImg8bit/ and gtFine/ of Cityscapes")
    files = {split: _list_split(root, folder) for split, folder in _SPLITS.items()}  # all checked first
    return {split: self._generate_examples(paths) for split, paths in files.items()}

  def _generate_examples(self, paths):
    for index, (image_path, label_path, instance_path) in enumerate(paths):
      name = os.path.basename(image_path)[:-len(_IMAGE_SUFFIX)]
      yield name, {
          "image_id": index,
          "file_name": name,
          "image": image_path,  # its PNG bytes as they are
          **_labels(image_path, label_path, instance_path),
      }


def _list_split(root, folder):
  """(image, labelIds, instanceIds) paths of a split in sorted order, every file checked to exist."""
  image_dir = os.path.join(root, "leftImg8bit", folder)
  label_dir = os.path.join(root, "gtFine", folder)
  for path, archive in ((image_dir, "leftImg8bit_trainvaltest.zip"), (label_dir, "gtFine_trainvaltest.zip")):
    if not os.path.isdir(path):
      raise UserError(f"Missing folder '{path}': unpack Cityscapes' {archive} into '{root}'.")
  images = sorted(glob.glob(os.path.join(image_dir, "*", "*" + _IMAGE_SUFFIX)))
  if not images:
    raise UserError(f"'{image_dir}' holds no CITY/*{_IMAGE_SUFFIX} files; unpack "
                    f"leftImg8bit_trainvaltest.zip into '{root}'.")
  paths = []
  for image in images:
    stem = os.path.join(label_dir, os.path.relpath(image, image_dir)[:-len(_IMAGE_SUFFIX)])
    labels = stem + "_gtFine_labelIds.png", stem + "_gtFine_instanceIds.png"
    for label in labels:
      if not os.path.isfile(label):
        raise UserError(f"Missing label file '{label}' for image '{image}'; every image needs its "
                        f"gtFine labelIds and instanceIds files (unpack gtFine_trainvaltest.zip).")
    paths.append((image, *labels))
  return paths


def _labels(image_path, label_path, instance_path):
  """Train ids, and instance ids on thing pixels: labelId*1000+k as Cityscapes numbers them."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  label_ids = dataset.read_png(label_path, "labelIds")
  instance_ids = dataset.read_png(instance_path, "instanceIds").astype(np.int64)  # 16-bit: "I;16" or "I"
  with Image.open(image_path) as im:  # reads the header only
    size = im.size[::-1]
  for path, labels in ((label_path, label_ids), (instance_path, instance_ids)):
    if labels.shape != size:
      raise UserError(f"'{path}' has shape {labels.shape}, not the {size[0]}x{size[1]} one-channel map "
                      f"its image '{image_path}' needs; use the official gtFine files.")
  if label_ids.max() > _MAX_LABEL_ID:
    raise UserError(f"Label {int(label_ids.max())} in '{label_path}' is not a Cityscapes labelId "
                    f"(0..{_MAX_LABEL_ID}); use the official gtFine *_labelIds.png files.")
  semantic = _TRAIN_ID[label_ids]
  instance = np.where((instance_ids >= 1000) & _IS_THING[semantic], instance_ids, 0)
  return {"semantic": semantic[..., None], "instance": instance.astype(np.uint16)[..., None]}
