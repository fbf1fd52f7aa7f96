"""tf.data pipeline: value ranges, joint augmentation, resumable order, eval padding, label checks."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from segjax import data
from segjax.data import augment
from segjax.errors import UserError


def test_train_batches_shapes_and_range(data_dir):
  batch = next(data.train_batches(tiny_config(data_dir), 0, 4))
  assert batch["image"].shape == (4, 48, 48, 3) and batch["image"].dtype == np.float32
  assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
  assert batch["image"].max() > 0.5  # pixels were scaled, not left in [0, 255] or zeroed
  assert batch["semantic"].shape == (4, 48, 48)
  assert set(np.unique(batch["semantic"])) <= {0, 1, 2, 3, 255}


def test_flip_and_crop_move_image_and_labels_together():
  labels = np.random.default_rng(0).integers(0, 4, (32, 32, 1)).astype(np.uint8)
  image = np.repeat(labels * 60, 3, axis=-1).astype(np.uint8)  # the image spells out its labels
  flipped = 0
  for s in range(16):
    img, lab = augment.scale_crop_flip(tf.constant(image), tf.constant(labels), tf.constant([s, 1]),
                                       crop_size=24, min_scale=1.0, max_scale=1.0, flip=True,
                                       ignore_label=255)
    img, lab = img.numpy(), lab.numpy()
    np.testing.assert_allclose(np.round(img[..., 0] * 255 / 60), lab[..., 0])
    # Find the crop in the original to learn whether it was flipped.
    found = [f for f in (False, True) for y in range(9) for x in range(9)
             if np.array_equal((labels[:, ::-1] if f else labels)[y:y + 24, x:x + 24], lab)]
    assert found
    flipped += found[0]
  assert 0 < flipped < 16


def test_scaling_resizes_labels_with_nearest_neighbour():
  labels = np.random.default_rng(1).integers(0, 4, (32, 32, 1)).astype(np.uint8)
  image = np.zeros((32, 32, 3), np.uint8)
  _, lab = augment.scale_crop_flip(tf.constant(image), tf.constant(labels), tf.constant([3, 4]),
                                   crop_size=40, min_scale=1.7, max_scale=1.9, flip=False,
                                   ignore_label=255)
  assert set(np.unique(lab.numpy())) <= {0, 1, 2, 3, 255}  # no blended label values


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


def test_label_out_of_range_is_named(data_dir):
  config = tiny_config(data_dir, **{"dataset.num_classes": 2})
  with pytest.raises(UserError, match=r"num_classes=2 but dataset .* has 4 classes"):
    data.dataset_info(config)
  with pytest.raises(UserError, match=r"Label 3 is out of range for 2 classes"):
    next(data.train_batches(config, 0, 8))


def test_unknown_and_unprepared_datasets_are_named(data_dir, tmp_path):
  with pytest.raises(UserError, match="Unknown dataset 'no_such_set'"):
    data.dataset_info(tiny_config(data_dir, **{"dataset.name": "no_such_set"}))
  with pytest.raises(UserError, match=r"Dataset 'mnist' is not prepared in .*tfds build mnist"):
    data.dataset_info(tiny_config(str(tmp_path), **{"dataset.name": "mnist"}))
