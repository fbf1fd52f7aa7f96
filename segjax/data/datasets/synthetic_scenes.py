"""The built-in dataset as a real tfds builder, so it is read exactly like COCO or Cityscapes."""
from concurrent import futures
import dataclasses
import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from segjax.data import dataset, scenes

DESCRIPTOR = dataset.register(dataset.Descriptor(
    name="synthetic_scenes", builder="synthetic_scenes", class_names=tuple(scenes.CLASS_NAMES),
    thing_classes=(1, 2, 3), crop_size=(256, 256), eval_size=(256, 256), needs_manual_dir=False))


@dataclasses.dataclass
class ScenesConfig(tfds.core.BuilderConfig):
  image_size: int = 256
  num_train: int = 2000
  num_validation: int = 256
  max_objects: int = 8
  seed: int = 0


class SyntheticScenes(tfds.core.GeneratorBasedBuilder):
  """Shapes on textured backgrounds, drawn locally from a seed: semantic, instance and boxes."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Disks, squares and triangles; class by shape, colour random."}
  BUILDER_CONFIGS = [
      ScenesConfig(name="default", description="256x256, 2000 train and 256 validation scenes."),
      ScenesConfig(name="tiny", description="64x64 scenes for tests.", image_size=64, num_train=48,
                   num_validation=20, max_objects=5),
  ]

  def _info(self):
    size = self.builder_config.image_size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image_id": tfds.features.Scalar(np.int64),  # index in its split, the COCO image id
            "image": tfds.features.Image(shape=(size, size, 3), encoding_format="jpeg"),
            "semantic": tfds.features.Image(shape=(size, size, 1)),
            "instance": tfds.features.Image(shape=(size, size, 1)),
            "objects": tfds.features.Sequence({
                "label": tfds.features.ClassLabel(names=scenes.CLASS_NAMES),
                "bbox": tfds.features.BBoxFeature(),
                "area": tfds.features.Scalar(np.int64),
            }),
        }),
        description=__doc__,
        homepage="https://github.com/segjax/segjax",
        metadata=tfds.core.MetadataDict(class_names=list(scenes.CLASS_NAMES)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    cfg = self.builder_config
    return {
        "train": self._generate_examples(0, cfg.num_train),
        "validation": self._generate_examples(1, cfg.num_validation),
    }

  def _generate_examples(self, split_id, count):
    cfg = self.builder_config
    draw = functools.partial(scenes.draw_scene, size=cfg.image_size, max_objects=cfg.max_objects)
    seeds = [[cfg.seed, split_id, index] for index in range(count)]
    with futures.ThreadPoolExecutor(os.cpu_count()) as pool:  # NumPy drawing releases the GIL
      for index, scene in enumerate(_chunked_map(pool, draw, seeds, chunk=64)):
        yield index, {
            "image_id": index,
            "image": scene["image"],
            "semantic": scene["semantic"][..., None],
            "instance": scene["instance"][..., None],
            "objects": {"label": scene["label"], "bbox": scene["bbox"], "area": scene["area"]},
        }


def _chunked_map(pool, fn, items, chunk):
  """pool.map in order, holding at most two chunks of results in memory."""
  pending = pool.map(fn, items[:chunk])
  for start in range(chunk, len(items) + chunk, chunk):
    nxt = pool.map(fn, items[start:start + chunk])
    yield from pending
    pending = nxt
