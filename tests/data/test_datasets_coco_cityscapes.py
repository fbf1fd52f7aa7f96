"""COCO panoptic and Cityscapes builders, run on tiny files written in the official layouts."""
import glob
import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from fakes import cityscapes as fake_cityscapes
from fakes import coco_panoptic as fake_coco
from segjax.data import dataset
from segjax.data.datasets import cityscapes, coco_panoptic
from segjax.errors import UserError


def _prepare(name, root, data_dir):
  builder = tfds.builder(name, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  return builder


def _check_split(builder, split, expected, exact_image):
  assert builder.info.splits[split].num_examples == len(expected)
  got = sorted(tfds.as_numpy(builder.as_dataset(split)), key=lambda ex: ex["image_id"])
  expected = sorted(expected, key=lambda ex: ex["image_id"])
  for ex, want in zip(got, expected):
    assert ex["image_id"] == want["image_id"] and ex["file_name"].decode() == want["file_name"]
    height, width = want["semantic"].shape
    assert ex["image"].shape == (height, width, 3) and ex["image"].dtype == np.uint8
    if exact_image:
      np.testing.assert_array_equal(ex["image"], want["image"])
    else:  # JPEG: the right picture within a few levels
      assert np.abs(ex["image"].astype(int) - want["image"]).mean() < 3
    assert ex["semantic"].dtype == np.uint8 and ex["instance"].dtype == np.uint16
    np.testing.assert_array_equal(ex["semantic"][..., 0], want["semantic"], err_msg=want["file_name"])
    np.testing.assert_array_equal(ex["instance"][..., 0], want["instance"], err_msg=want["file_name"])


def _assert_nothing_prepared(builder, data_dir):
  assert not builder.is_prepared()
  assert not os.path.exists(builder.data_dir)  # no version folder, complete or not
  left = [p for p in glob.glob(os.path.join(data_dir, "**"), recursive=True)
          if "incomplete" in p or "tfrecord" in p or p.endswith(".json")]
  assert not left


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
  root = tmp_path_factory.mktemp("coco")
  expected = fake_coco.write(str(root))
  return _prepare("segjax_coco_panoptic", root, tmp_path_factory.mktemp("tfds")), expected


@pytest.fixture(scope="module")
def city(tmp_path_factory):
  root = tmp_path_factory.mktemp("cityscapes")
  expected = fake_cityscapes.write(str(root))
  return _prepare("segjax_cityscapes", root, tmp_path_factory.mktemp("tfds")), expected


# COCO panoptic.


def test_coco_category_table_is_the_official_one():
  ids = [i for i, _, _ in coco_panoptic.CATEGORIES]
  assert len(ids) == 133 == len(set(ids)) and ids == sorted(ids)
  assert [i for i, _, _ in coco_panoptic.THINGS] == ids[:80] and ids[79] == 90 and ids[80] == 92
  names = coco_panoptic.CLASS_NAMES
  assert (names[0], names[79], names[80], names[132]) == ("person", "toothbrush", "banner", "rug-merged")
  for category, index in fake_coco.CLASS.items():  # the fake's expectations agree with the table
    assert ids[index] == category


def test_coco_descriptor():
  d = dataset.get("coco_panoptic")
  assert d.builder == "segjax_coco_panoptic" and d.class_names == coco_panoptic.CLASS_NAMES
  assert d.thing_classes == tuple(range(80)) and d.ignore_label == 255 and d.label_divisor == 1000
  assert d.crop_size == d.eval_size == (640, 640)
  assert len(d.colormap) == 133 and d.colormap[0] == (220, 20, 60)


def test_coco_examples_pixel_for_pixel(coco):
  builder, expected = coco
  assert list(builder.info.metadata["class_names"]) == list(coco_panoptic.CLASS_NAMES)
  assert list(builder.info.metadata["thing_classes"]) == list(range(80))
  for split in ("train", "validation"):
    _check_split(builder, split, expected[split], exact_image=False)
  # The fakes hold what the test is about: crowd, VOID, ids over 65535, two sizes per split.
  train = {ex["image_id"]: ex for ex in expected["train"]}
  crowd = (train[139]["semantic"] == 0) & (train[139]["instance"] == 0)
  assert crowd.any() and (train[139]["semantic"] == 255).any() and train[139]["instance"].max() == 3


def _break_coco(root, what):
  """Spoils the fake in one way; returns what the error sentence must name."""
  annotations = os.path.join(root, "annotations")
  json_path = os.path.join(annotations, "panoptic_val2017.json")
  png_path = os.path.join(annotations, "panoptic_val2017", "000000000724.png")
  if what == "json":
    os.remove(json_path)
    return json_path
  if what == "png":
    os.remove(png_path)
    return png_path
  if what == "jpeg":
    os.remove(os.path.join(root, "val2017", "000000000724.jpg"))
    return os.path.join(root, "val2017", "000000000724.jpg")
  if what == "segment":  # a PNG colour that segments_info does not list
    rgb = np.asarray(Image.open(png_path)).copy()
    rgb[0, 0] = (5, 6, 7)
    Image.fromarray(rgb).save(png_path)
    return f"{5 + 6 * 256 + 7 * 65536}"
  with open(json_path) as f:
    doc = json.load(f)
  if what == "category":  # 12 is one of the COCO ids that panoptic has no category for
    doc["annotations"][1]["segments_info"][1]["category_id"] = 12
    message = "category 12"
  else:  # "categories": a renamed class
    doc["categories"][3]["name"] = "motorbike"
    message = "motorbike"
  with open(json_path, "w") as f:
    json.dump(doc, f)
  return message


@pytest.mark.parametrize("what", ["json", "png", "jpeg", "segment", "category", "categories"])
def test_coco_errors_name_the_file_and_leave_nothing(tmp_path, what):
  root = str(tmp_path / "coco")
  fake_coco.write(root)
  message = _break_coco(root, what)
  builder = tfds.builder("segjax_coco_panoptic", data_dir=str(tmp_path / "tfds"))
  with pytest.raises(UserError) as e:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  assert message in str(e.value) and str(e.value).endswith(".")
  _assert_nothing_prepared(builder, str(tmp_path / "tfds"))


# Cityscapes.


def test_cityscapes_descriptor():
  d = dataset.get("cityscapes")
  assert d.builder == "segjax_cityscapes"
  assert d.class_names[:3] == ("road", "sidewalk", "building") and d.class_names[-1] == "bicycle"
  assert len(d.class_names) == 19 and d.thing_classes == tuple(range(11, 19))
  assert d.official_ids == tuple(sorted(fake_cityscapes.TRAIN_ID, key=fake_cityscapes.TRAIN_ID.get))
  assert d.colormap[0] == (128, 64, 128) and d.colormap[18] == (119, 11, 32) and len(d.colormap) == 19
  assert d.crop_size == (512, 1024) and d.eval_size == (1024, 2048)
  assert d.ignore_label == 255 and d.label_divisor == 1000


def test_cityscapes_examples_pixel_for_pixel(city):
  builder, expected = city
  assert list(builder.info.metadata["class_names"]) == list(cityscapes.DESCRIPTOR.class_names)
  for split in ("train", "validation"):
    _check_split(builder, split, expected[split], exact_image=True)
  names = [ex["file_name"] for ex in expected["train"]]
  assert names == ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"]
  instance = np.concatenate([ex["instance"].ravel() for s in expected.values() for ex in s])
  assert instance.max() == 33999  # ids above 255 survive as uint16


@pytest.mark.parametrize("kind", ["gtFine_labelIds", "gtFine_instanceIds"])
def test_cityscapes_missing_label_file(tmp_path, kind):
  root = str(tmp_path / "cityscapes")
  fake_cityscapes.write(root)
  missing = fake_cityscapes.path(root, "validation", "lindau_000000_000019", kind)
  os.remove(missing)
  builder = tfds.builder("segjax_cityscapes", data_dir=str(tmp_path / "tfds"))
  with pytest.raises(UserError, match="Missing label file") as e:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  assert missing in str(e.value)
  _assert_nothing_prepared(builder, str(tmp_path / "tfds"))


def test_cityscapes_label_outside_the_label_ids(tmp_path):
  root = str(tmp_path / "cityscapes")
  fake_cityscapes.write(root)
  path = fake_cityscapes.path(root, "validation", "frankfurt_000000_000294", "gtFine_labelIds")
  label = np.asarray(Image.open(path)).copy()
  label[3, 5] = 34
  Image.fromarray(label).save(path)
  builder = tfds.builder("segjax_cityscapes", data_dir=str(tmp_path / "tfds"))
  with pytest.raises(UserError, match=r"^Label 34 in '.*frankfurt_000000_000294_gtFine_labelIds\.png' "
                     r"is not a Cityscapes labelId \(0\.\.33\);[^\n]*\.$"):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  _assert_nothing_prepared(builder, str(tmp_path / "tfds"))


def test_cityscapes_missing_split_folder(tmp_path):
  root = tmp_path / "cityscapes"
  fake_cityscapes.write(str(root))
  os.rename(root / "leftImg8bit" / "val", root / "leftImg8bit" / "test")
  builder = tfds.builder("segjax_cityscapes", data_dir=str(tmp_path / "tfds"))
  with pytest.raises(UserError, match="Missing folder '.*leftImg8bit/val'"):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  _assert_nothing_prepared(builder, str(tmp_path / "tfds"))


@pytest.mark.parametrize("name", ["segjax_coco_panoptic", "segjax_cityscapes"])
def test_empty_manual_dir(tmp_path, name):
  manual = tmp_path / "manual"
  manual.mkdir()
  builder = tfds.builder(name, data_dir=str(tmp_path / "tfds"))
  with pytest.raises(UserError, match=r"^Manual directory .*manual does not exist or is empty; put .*\.$"):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  _assert_nothing_prepared(builder, str(tmp_path / "tfds"))
