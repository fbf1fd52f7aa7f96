"""tf.data pipeline: value ranges, resumable order, eval padding, label checks (augmentation:
test_augment.py)."""
import numpy as np
import pytest

from conftest import tiny_config
from segjax import data
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
