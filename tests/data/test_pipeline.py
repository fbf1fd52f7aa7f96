"""tf.data pipeline: value ranges, resumable order, eval padding, label checks (augmentation:
test_augment.py)."""
from etils import epath
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import tiny_config, tiny_panoptic_config
from segjax import data
from segjax.config import base_config
from segjax.data import dataset
from segjax.engine import parallel
from segjax.errors import UserError


def test_train_batches_shapes_and_range(data_dir):
  batch = next(data.train_batches(tiny_config(data_dir), 0, 4))
  assert batch["image"].shape == (4, 48, 48, 3) and batch["image"].dtype == np.float32
  assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
  assert batch["image"].max() > 0.5  # pixels were scaled, not left in [0, 255] or zeroed
  assert batch["semantic"].shape == (4, 48, 48)
  assert set(np.unique(batch["semantic"])) <= {0, 1, 2, 3, 255}


def test_resumed_stream_equals_uninterrupted(data_dir):
  config = tiny_config(data_dir)
  straight = data.train_batches(config, 0, 8)
  batches = [next(straight) for _ in range(9)]  # crosses the 48-example epoch boundary
  resumed = data.train_batches(config, 5, 8)
  for expected in batches[5:]:
    got = next(resumed)
    np.testing.assert_array_equal(got["image"], expected["image"])
    np.testing.assert_array_equal(got["semantic"], expected["semantic"])
  assert not np.array_equal(batches[0]["image"], batches[6]["image"])  # epochs are reshuffled


def test_eval_data_pads_last_batch_and_marks_it(data_dir):
  ev = data.EvalData(tiny_config(data_dir), host_batch=8)
  batches = list(ev)
  assert ev.num_batches == len(batches) == 3
  valid = np.concatenate([b["valid"] for b in batches])
  assert valid.sum() == 20 and not valid[20:].any()
  assert np.all(batches[-1]["semantic"][~batches[-1]["valid"]] == 255)


def test_values_that_follow_from_the_data_come_from_the_descriptor(data_dir):
  config = base_config()
  config.dataset.name, config.dataset.data_dir = "synthetic_scenes/tiny", data_dir
  config.dataset.thing_classes = (1, 2, 3)  # repeating the dataset's value is allowed
  config.input.eval_size = (80, 96)
  resolved, names = data.resolve(config)
  assert names == ["background", "disk", "square", "triangle"]
  ds = resolved.dataset
  assert (ds.num_classes, tuple(ds.thing_classes), ds.ignore_label, ds.label_divisor) == (4, (1, 2, 3), 255, 1000)
  assert resolved.input.crop_size == (256, 256) and resolved.input.eval_size == (80, 96)
  assert config.dataset.num_classes is None  # the caller's config is left as it was


def test_label_out_of_range_is_named(data_dir):
  config = tiny_config(data_dir, **{"dataset.num_classes": 2})
  with pytest.raises(UserError, match=r"num_classes=2 but dataset .* has 4; leave it unset"):
    data.resolve(config)
  with pytest.raises(UserError, match=r"Label 3 in the data is out of range for its 2 classes"):
    next(data.train_batches(config, 0, 8))


def test_unknown_and_unbuilt_datasets_are_named(data_dir, tmp_path):
  with pytest.raises(UserError, match="Unknown dataset 'no_such_set'.*known: .*cityscapes"):
    data.resolve(tiny_config(data_dir, **{"dataset.name": "no_such_set"}))
  with pytest.raises(UserError, match=r"'cityscapes' is not built in .*set config.dataset.manual_dir"):
    data.resolve(tiny_config(str(tmp_path), **{"dataset.name": "cityscapes"}))


dataset.register(dataset.Descriptor(name="no_id_scenes", builder="no_id_scenes", class_names=("a", "b"),
                                    thing_classes=(1,), needs_manual_dir=False))


class NoIdScenes(tfds.core.GeneratorBasedBuilder):
  """Five 16x16 examples with no image_id feature, as most datasets have none."""
  VERSION = tfds.core.Version("1.0.0")
  pkg_dir_path = epath.Path(__file__).parent  # tfds looks for metadata beside the builder's package

  def _info(self):
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(16, 16, 3)),
        "semantic": tfds.features.Image(shape=(16, 16, 1)),
        "instance": tfds.features.Image(shape=(16, 16, 1)),
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"validation": self._generate_examples()}

  def _generate_examples(self):
    for i in range(5):
      yield i, {"image": np.full((16, 16, 3), 10 * i, np.uint8),
                "semantic": np.zeros((16, 16, 1), np.uint8), "instance": np.zeros((16, 16, 1), np.uint8)}


@pytest.mark.parametrize("process,expected", [(None, [0, 1]), (1, [2, 3])])
def test_eval_images_without_ids_get_one_id_each(tmp_path, monkeypatch, process, expected):
  tfds.builder("no_id_scenes", data_dir=str(tmp_path)).download_and_prepare()
  if process is not None:  # process 1 of 2 holds rows 2-3 of the first global batch of 4: examples 2 and 3
    monkeypatch.setattr(jax, "process_index", lambda: process)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(parallel, "on_process_zero", lambda fn, what: None)  # built above
  config = tiny_panoptic_config(str(tmp_path), **{"dataset.name": "no_id_scenes", "input.eval_size": (16, 16)})
  batch = next(iter(data.EvalData(config, host_batch=2)))
  assert sorted(batch["image_id"][batch["valid"]]) == expected  # not -1 for every image


def test_sliced_splits_work(data_dir):
  config = tiny_config(data_dir, **{"dataset.train_split": "train[:25%]", "dataset.eval_split": "validation[50%:]"})
  eval_data = data.EvalData(config, host_batch=8)
  ids = np.concatenate([b["image_id"][b["valid"]] for b in eval_data])
  records = tfds.builder("synthetic_scenes/tiny", data_dir=data_dir).as_dataset(split="validation[50%:]")
  assert eval_data.num_examples == 10 and sorted(ids) == sorted(int(ex["image_id"]) for ex in records)
  batches = data.train_batches(config, 0, 4)
  first_epoch = np.concatenate([next(batches)["image"] for _ in range(3)])  # 12 = train[:25%]
  assert len({im.tobytes() for im in first_epoch}) == 12
  with pytest.raises(UserError, match="has no split 'test'"):
    data.EvalData(tiny_config(data_dir, **{"dataset.eval_split": "test"}), host_batch=8)
