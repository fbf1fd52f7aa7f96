"""A user's own data in plain folders: images, class-index PNGs, optional instance-id PNGs, classes.json.

manual_dir/
  classes.json                  {"classes": [{"name": "background"}, {"name": "car", "thing": true}, ...]}
                                (optional "ignore_label": N, default 255)
  images/train/NAME.png|.jpg    any Pillow-readable picture, stored as RGB PNG
  semantic/train/NAME.png       8-bit single channel: the class index of each pixel
  instance/train/NAME.png       optional, 8- or 16-bit single channel: an object id per pixel, 0 for none
  images/validation/ ...        likewise (also accepted as images/val/)
"""
import os

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from segjax.data import dataset
from segjax.errors import UserError

# Classes and things come from classes.json, into the built dataset's metadata.
DESCRIPTOR = dataset.register(dataset.Descriptor(
    name="folder", builder="segjax_folder", class_names=None, thing_classes=None,
    crop_size=(512, 512), eval_size=(1024, 1024)))

_SPLITS = {"train": ("train",), "validation": ("validation", "val")}
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FORMAT = "see the layout in segjax/data/datasets/folder.py"


class SegjaxFolder(tfds.core.GeneratorBasedBuilder):
  """Your own semantic (and optionally instance) labels, in the folders the module docstring shows."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Images as RGB PNG; ignore label stored as 255; instance ids on things only."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _info(self):
    # classes.json is read in _split_generators, the first place that sees manual_dir; what goes into
    # this dict there is saved with the dataset (metadata.json) and read back with it.
    return self.dataset_info_from_configs(
        features=dataset.features("png", instances=True),
        description=__doc__,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    root = dataset.manual_root(dl_manager, "classes.json, images/ and semantic/")
    classes = read_classes(os.path.join(root, "classes.json"))
    has_instances = os.path.isdir(os.path.join(root, "instance"))
    self.info.metadata.update(dataset.metadata(classes["names"], classes["things"]))
    self.info.metadata["has_instances"] = has_instances
    # Listing every split first reports a missing file before any example is written.
    return {split: self._generate_examples(_examples(root, split, has_instances), classes)
            for split in _SPLITS}

  def _generate_examples(self, examples, classes):
    num_classes, ignore = len(classes["names"]), classes["ignore_label"]
    things = np.array(classes["things"], np.int64)
    for index, (stem, image_path, semantic_path, instance_path) in enumerate(examples):
      image = _read_rgb(image_path)
      size = image.shape[:2]
      semantic = dataset.read_label(semantic_path, size, "semantic", "an 8-bit PNG of class indices",
                                    (np.uint8, np.bool_))
      semantic = dataset.check_semantic(semantic.astype(np.uint8), num_classes, ignore, semantic_path)
      semantic = np.where(semantic == ignore, DESCRIPTOR.ignore_label, semantic).astype(np.uint8)
      instance = np.zeros(size, np.uint16)
      if instance_path:
        ids = dataset.read_label(instance_path, size, "instance", "an 8- or 16-bit PNG of object ids",
                                 (np.uint8, np.uint16, np.int32))
        if ids.min() < 0 or ids.max() > 65535:
          raise UserError(f"Instance ids in '{instance_path}' must be 0..65535.")
        # Only things have instances; an id on a stuff or ignored pixel means nothing.
        instance = np.where(np.isin(semantic, things), ids, 0).astype(np.uint16)
        pairs = np.unique(semantic.astype(np.int64)[instance > 0] * 65536 + instance[instance > 0])
        shared = pairs % 65536
        if len(np.unique(shared)) < len(shared):
          raise UserError(f"An instance id in '{instance_path}' covers pixels of two classes; give each "
                          f"object its own id (ids are per image, not per class).")
      yield stem, {
          "image_id": index,
          "file_name": stem,
          "image": image,
          "semantic": semantic[..., None],
          "instance": instance[..., None],
      }


def read_classes(path):
  """{"names", "things", "ignore_label"} from classes.json, or UserError saying what to fix."""
  if not os.path.isfile(path):
    raise UserError(f"Missing '{path}': write the class list there, e.g. {{\"classes\": [{{\"name\": "
                    f"\"background\"}}, {{\"name\": \"car\", \"thing\": true}}]}}.")
  spec = dataset.read_json(path)
  entries = spec.get("classes") if isinstance(spec, dict) else None
  if not isinstance(entries, list) or not entries:
    raise UserError(f"'{path}' needs a non-empty \"classes\" list: "
                    f"{{\"classes\": [{{\"name\": \"background\"}}, ...]}}.")
  for index, entry in enumerate(entries):
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
      raise UserError(f"Class {index} in '{path}' needs a \"name\" string: {{\"name\": \"car\"}}, with "
                      f"\"thing\": true for classes with instances.")
  if len(entries) > 255:
    raise UserError(f"'{path}' lists {len(entries)} classes; 8-bit label PNGs hold at most 255 (and 255 "
                    f"itself is then the ignore label).")
  ignore = spec.get("ignore_label", 255)
  if not isinstance(ignore, int) or isinstance(ignore, bool) or not len(entries) <= ignore <= 255:
    raise UserError(f"\"ignore_label\" in '{path}' is {ignore!r}; it must be an integer from "
                    f"{len(entries)} (the number of classes) to 255.")
  return {"names": [e["name"] for e in entries], "ignore_label": ignore,
          "things": [i for i, e in enumerate(entries) if e.get("thing")]}


def _split_dir(root, kind, split):
  """root/kind/<split folder>, accepting each split's alternative folder names."""
  found = [os.path.join(root, kind, name) for name in _SPLITS[split]
           if os.path.isdir(os.path.join(root, kind, name))]
  if len(found) > 1:
    raise UserError(f"Both '{found[0]}' and '{found[1]}' exist; keep one folder for the {split} split.")
  if not found:
    raise UserError(f"Missing folder '{os.path.join(root, kind, _SPLITS[split][0])}'; {_FORMAT}.")
  return found[0]


def _examples(root, split, has_instances):
  """(stem, image, semantic, instance or None) of each image of the split, sorted by file name."""
  image_dir = _split_dir(root, "images", split)
  folder = os.path.basename(image_dir)
  images = {}
  for name in sorted(os.listdir(image_dir)):
    stem, ext = os.path.splitext(name)
    if ext.lower() not in _IMAGE_EXTENSIONS:
      continue
    if stem in images:
      raise UserError(f"Two images named '{stem}' in '{image_dir}' ({os.path.basename(images[stem])} "
                      f"and {name}); each needs its own name, since its labels are found by name.")
    images[stem] = os.path.join(image_dir, name)
  if not images:
    raise UserError(f"No .png or .jpg images in '{image_dir}'.")
  label_dirs = [os.path.join(root, "semantic", folder)]
  if has_instances:
    label_dirs.append(os.path.join(root, "instance", folder))
  examples = []
  for stem in sorted(images):
    paths = [os.path.join(d, stem + ".png") for d in label_dirs]
    for path in paths:
      if not os.path.isfile(path):
        raise UserError(f"Missing label file '{path}' of image '{images[stem]}'; every image needs one "
                        f"(same name, .png).")
    examples.append((stem, images[stem], paths[0], paths[1] if has_instances else None))
  return examples


def _read_rgb(path):
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except OSError as e:
    raise UserError(f"Cannot read image '{path}' ({e}).") from e
