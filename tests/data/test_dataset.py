"""The built-in dataset: shapes, consistency of its labels, determinism, the tfds builder."""
import numpy as np
import tensorflow_datasets as tfds

from segjax.data import scenes


def test_scene_shapes_and_label_consistency():
  for index in range(8):
    s = scenes.draw_scene([0, 0, index])
    assert s["image"].shape == (256, 256, 3) and s["image"].dtype == np.uint8
    assert s["semantic"].shape == s["instance"].shape == (256, 256)
    n = len(s["label"])
    assert 3 <= n <= 8
    assert set(np.unique(s["instance"])) <= set(range(n + 1))
    for k in range(1, n + 1):  # each instance's pixels carry its class in the semantic map
      pixels = s["instance"] == k
      assert pixels.sum() == s["area"][k - 1] > 0
      assert np.all(s["semantic"][pixels] == s["label"][k - 1])
      ys, xs = np.nonzero(pixels)
      np.testing.assert_allclose(s["bbox"][k - 1], [ys.min() / 256, xs.min() / 256,
                                                    (ys.max() + 1) / 256, (xs.max() + 1) / 256])
    assert np.all(s["semantic"][s["instance"] == 0] == 0)


def test_scenes_are_deterministic_and_varied():
  a, b, c = scenes.draw_scene([0, 0, 3]), scenes.draw_scene([0, 0, 3]), scenes.draw_scene([0, 0, 4])
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["image"], c["image"])


def test_same_class_objects_touch_and_classes_cover_all_shapes():
  labels, touching = set(), 0
  for index in range(20):
    s = scenes.draw_scene([0, 0, index])
    labels |= set(s["label"].tolist())
    ids = s["instance"].astype(int)
    # Horizontally adjacent pixels of two different instances of the same class.
    left, right = ids[:, :-1], ids[:, 1:]
    pair = (left > 0) & (right > 0) & (left != right)
    same = s["label"][np.maximum(left, 1) - 1] == s["label"][np.maximum(right, 1) - 1]
    touching += int(np.any(pair & same))
  assert labels == {1, 2, 3}
  assert touching >= 5


def test_colour_does_not_give_the_class():
  """Mean object colour per class is nearly the same: only shape separates them."""
  colours = {1: [], 2: [], 3: []}
  for index in range(40):
    s = scenes.draw_scene([0, 0, index])
    for k, label in enumerate(s["label"], start=1):
      colours[int(label)].append(s["image"][s["instance"] == k].mean(0))
  means = np.array([np.mean(colours[c], 0) for c in (1, 2, 3)])
  assert np.abs(means - means.mean(0)).max() < 25  # of 255


def test_tfds_builder_splits_and_features(data_dir):
  builder = tfds.builder("synthetic_scenes/tiny", data_dir=data_dir)
  assert builder.info.splits["train"].num_examples == 48
  assert builder.info.splits["validation"].num_examples == 20
  ex = next(iter(builder.as_dataset(split="validation").take(1)))
  assert ex["image"].shape == (64, 64, 3)
  assert ex["semantic"].shape == ex["instance"].shape == (64, 64, 1)
  assert ex["objects"]["bbox"].shape[1] == 4
  # Labels are stored losslessly and match the generator exactly.
  again = scenes.draw_scene([0, 1, int(ex["image_id"])], size=64, max_objects=5)
  np.testing.assert_array_equal(ex["semantic"].numpy()[..., 0], again["semantic"])
  np.testing.assert_array_equal(ex["instance"].numpy()[..., 0], again["instance"])
  np.testing.assert_array_equal(ex["objects"]["label"].numpy(), again["label"])


def test_default_builder_config_is_256_with_200_plus_validation_images():
  config = {c.name: c for c in tfds.builder_cls("synthetic_scenes").BUILDER_CONFIGS}["default"]
  assert config.image_size == 256 and config.num_validation >= 200
