"""ADE20K, Pascal VOC and user-folder builders, run on tiny files written in each official layout."""
import glob
import json
import os
import re
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from fakes import ade20k as fake_ade
from fakes import folder as fake_folder
from fakes import pascal_voc as fake_voc
from segjax.data import dataset
from segjax.data.datasets import ade20k, folder, pascal_voc
from segjax.errors import UserError


def _prepare(name, root, data_dir):
  builder = tfds.builder(name, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  return builder


def _check_split(builder, split, expected, exact_image, instances):
  assert builder.info.splits[split].num_examples == len(expected)
  got = sorted(tfds.as_numpy(builder.as_dataset(split)), key=lambda ex: ex["image_id"])
  expected = sorted(expected, key=lambda ex: ex["image_id"])
  assert [ex["image_id"] for ex in got] == list(range(len(expected)))
  for ex, want in zip(got, expected):
    assert ex["image_id"] == want["image_id"] and ex["file_name"].decode() == want["file_name"]
    assert want["semantic"].shape == (want["height"], want["width"])
    assert ex["image"].shape == (want["height"], want["width"], 3) and ex["image"].dtype == np.uint8
    if exact_image:
      np.testing.assert_array_equal(ex["image"], want["image"], err_msg=want["file_name"])
    else:  # JPEG: Pillow and TensorFlow decode it a level or two apart
      assert np.abs(ex["image"].astype(int) - want["image"]).mean() < 3, want["file_name"]
    assert ex["semantic"].dtype == np.uint8
    np.testing.assert_array_equal(ex["semantic"][..., 0], want["semantic"], err_msg=want["file_name"])
    assert ("instance" in ex) == instances
    if instances:
      assert ex["instance"].dtype == np.uint16
      np.testing.assert_array_equal(ex["instance"][..., 0], want["instance"], err_msg=want["file_name"])
  sizes = {(want["height"], want["width"]) for want in expected}
  assert len(sizes) == 2  # the fakes hold two image sizes in each split


def _prepare_fails(name, root, data_dir, match):
  """Preparing raises UserError matching `match` and leaves no dataset, complete or not, behind."""
  builder = tfds.builder(name, data_dir=str(data_dir))
  with pytest.raises(UserError, match=match) as info:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  assert not builder.is_prepared() and not tfds.builder(name, data_dir=str(data_dir)).is_prepared()
  assert not os.path.exists(builder.data_dir)  # no version folder
  left = [p for p in glob.glob(os.path.join(data_dir, "**"), recursive=True)
          if "incomplete" in p or "tfrecord" in p or p.endswith(".json")]
  assert not left
  return str(info.value)


def _check_jpeg_bytes_kept(builder, split, path_of):
  """The stored image is the original file, not a re-encoding."""
  records = builder.as_dataset(split, decoders={"image": tfds.decode.SkipDecoding()})
  for ex in tfds.as_numpy(records):
    with open(path_of(ex["file_name"].decode()), "rb") as f:
      assert ex["image"] == f.read()


def _save_label(path, label, palette=None):
  mode = "L" if palette is None else "P"
  im = Image.frombytes(mode, label.shape[::-1], label.astype(np.uint8).tobytes())
  if palette is not None:
    im.putpalette(palette.flatten().tolist())
  im.save(path)


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
  root = tmp_path_factory.mktemp("ade")
  expected = fake_ade.write(str(root))
  return _prepare("segjax_ade20k", root, tmp_path_factory.mktemp("tfds")), expected, str(root)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
  root = tmp_path_factory.mktemp("voc")
  expected = fake_voc.write(str(root))
  return _prepare("segjax_pascal_voc", root, tmp_path_factory.mktemp("tfds")), expected, str(root)


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("folder")
  expected = fake_folder.write(str(root))
  data_dir = tmp_path_factory.mktemp("tfds")
  return _prepare("segjax_folder", root, data_dir), expected, data_dir


# ADE20K.


def test_ade_classes_and_descriptor():
  names = ade20k.CLASS_NAMES
  assert len(names) == 150 == len(set(names))
  assert (names[0], names[44], names[89], names[149]) == ("wall", "chest of drawers", "television receiver",
                                                          "flag")
  d = dataset.get("ade20k")
  assert d is ade20k.DESCRIPTOR and d.builder == "segjax_ade20k" and d.class_names == names
  assert d.thing_classes == () and d.ignore_label == 255 and d.crop_size == (512, 512)
  assert d.eval_size == (1600, 1600)  # ADE_val_00001157 is 1600x1600, the largest validation image


def test_ade_examples_pixel_for_pixel(ade):
  builder, expected, root = ade
  assert list(builder.info.metadata["class_names"]) == list(ade20k.CLASS_NAMES)
  assert list(builder.info.metadata["thing_classes"]) == []
  for split in ("train", "validation"):
    _check_split(builder, split, expected[split], exact_image=False, instances=False)
    _check_jpeg_bytes_kept(builder, split, lambda name, s=split: fake_ade.path(root, s, name, "images"))
  # The fakes hold what the test is about: unlabelled 0, the first and last class, a grey JPEG.
  semantic = np.concatenate([want["semantic"].ravel() for split in expected.values() for want in split])
  assert {255, 0, 149} <= set(semantic.tolist())
  assert expected["train"][0]["file_name"] == "ADE_train_00000001"


def test_ade_accepts_the_challenge_folder_itself(tmp_path):
  inner = tmp_path / "ADEChallengeData2016"
  (inner / "images").mkdir(parents=True)
  assert ade20k.find_root(str(tmp_path)) == str(inner)
  assert ade20k.find_root(str(inner)) == str(inner)
  with pytest.raises(UserError, match=re.escape(str(tmp_path / "elsewhere" / "ADEChallengeData2016"))):
    ade20k.find_root(str(tmp_path / "elsewhere"))


def test_ade_missing_annotation(tmp_path):
  fake_ade.write(str(tmp_path / "root"))
  missing = fake_ade.path(str(tmp_path / "root"), "validation", "ADE_val_00000002", "annotations")
  os.remove(missing)
  message = _prepare_fails("segjax_ade20k", tmp_path / "root", tmp_path / "tfds", re.escape(missing))
  assert "ADE_val_00000002.jpg" in message  # and names the image that needs it


def test_ade_label_above_150(tmp_path):
  fake_ade.write(str(tmp_path / "root"))
  bad = fake_ade.path(str(tmp_path / "root"), "train", "ADE_train_00000002", "annotations")
  label = np.asarray(Image.open(bad)).copy()
  label[3, 4] = 151
  _save_label(bad, label)
  _prepare_fails("segjax_ade20k", tmp_path / "root", tmp_path / "tfds",
                 f"Label 151 in '{re.escape(bad)}' is above 150")


# Pascal VOC.


def test_voc_classes_palette_and_descriptor():
  assert len(pascal_voc.CLASS_NAMES) == 21 and pascal_voc.CLASS_NAMES[15] == "person"
  colours = pascal_voc.palette()
  np.testing.assert_array_equal(colours, fake_voc.voc_palette())  # two ways of writing the formula
  known = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 4: (0, 0, 128), 15: (192, 128, 128),
           20: (0, 64, 128), 255: (224, 224, 192)}
  for index, rgb in known.items():
    assert tuple(colours[index]) == rgb
  d = dataset.get("pascal_voc")
  assert d is pascal_voc.DESCRIPTOR and d.builder == "segjax_pascal_voc"
  assert d.colormap == tuple(tuple(int(v) for v in c) for c in colours[:21])
  assert d.thing_classes == () and d.ignore_label == 255 and d.eval_size == d.crop_size == (512, 512)


def test_voc_examples_pixel_for_pixel(voc):
  builder, expected, root = voc
  assert list(builder.info.metadata["class_names"]) == list(pascal_voc.CLASS_NAMES)
  for split in ("train", "validation"):
    _check_split(builder, split, expected[split], exact_image=False, instances=False)
    _check_jpeg_bytes_kept(builder, split, lambda name: fake_voc.path(root, name, "JPEGImages"))
  # image_id follows the list file, which is not sorted; the unlisted JPEG is left out.
  assert [want["file_name"] for want in expected["train"]] == ["2007_000039", "2007_000032"]
  assert builder.info.splits["train"].num_examples + builder.info.splits["validation"].num_examples == 5
  semantic = np.concatenate([want["semantic"].ravel() for split in expected.values() for want in split])
  assert {0, 1, 20, 255} <= set(semantic.tolist())


def test_voc_accepts_voc2012_itself(tmp_path):
  inner = tmp_path / "VOCdevkit" / "VOC2012"
  (inner / "ImageSets").mkdir(parents=True)
  assert pascal_voc.find_root(str(tmp_path)) == str(inner) == pascal_voc.find_root(str(inner))
  with pytest.raises(UserError, match="VOCtrainval_11-May-2012.tar"):
    pascal_voc.find_root(str(tmp_path / "elsewhere"))


def test_voc_missing_list_and_files(tmp_path):
  root = str(tmp_path / "root")
  for missing in (fake_voc.path(root, "2007_000063", "SegmentationClass"),
                  fake_voc.path(root, "2007_000039", "JPEGImages")):
    fake_voc.write(root)
    os.remove(missing)
    _prepare_fails("segjax_pascal_voc", root, tmp_path / "tfds", f"Missing file '{re.escape(missing)}'")
  fake_voc.write(root)
  os.remove(fake_voc.list_path(root, "validation"))
  _prepare_fails("segjax_pascal_voc", root, tmp_path / "tfds",
                 f"Missing list file '{re.escape(fake_voc.list_path(root, 'validation'))}'")


def test_voc_bad_labels(tmp_path):
  root = str(tmp_path / "root")
  fake_voc.write(root)
  bad = fake_voc.path(root, "2007_000033", "SegmentationClass")
  label = np.asarray(Image.open(bad)).copy()
  label[0, 0] = 21
  _save_label(bad, label, fake_voc.voc_palette())
  _prepare_fails("segjax_pascal_voc", root, tmp_path / "tfds",
                 f"Label 21 in '{re.escape(bad)}' is outside the 21 classes")
  Image.open(bad).convert("RGB").save(bad)  # the colours instead of the indices
  _prepare_fails("segjax_pascal_voc", root, tmp_path / "tfds",
                 f"'{re.escape(bad)}' has 3 channels; it must be an 8-bit palette PNG")


# A user's folder.


def test_folder_descriptor_reads_classes_from_the_data():
  d = dataset.get("folder")
  assert d is folder.DESCRIPTOR and d.builder == "segjax_folder"
  assert d.class_names is None and d.thing_classes is None
  assert d.crop_size == (512, 512) and d.eval_size == (1024, 1024) and d.ignore_label == 255


def test_folder_examples_pixel_for_pixel(user_folder):
  builder, expected, _ = user_folder
  for split in ("train", "validation"):
    _check_split(builder, split, expected[split], exact_image=True, instances=True)
  # The fake holds what the test is about: ids above 255 and up to 65535, a thing pixel with id 0
  # (crowd), ids on stuff and ignored pixels that must be dropped.
  street = next(want for want in expected["train"] if want["file_name"] == "street")
  assert {300, 1000, 65535} <= set(street["instance"].ravel().tolist())
  assert ((street["semantic"] == 2) & (street["instance"] == 0)).any()
  assert not street["instance"][street["semantic"] == 1].any()
  assert not street["instance"][street["semantic"] == 255].any()


def test_folder_metadata_survives_reloading(user_folder):
  _, _, data_dir = user_folder
  reloaded = tfds.builder("segjax_folder", data_dir=str(data_dir))  # a fresh builder reads metadata.json
  assert reloaded.is_prepared()
  meta = reloaded.info.metadata
  assert meta.get("class_names") == [c["name"] for c in fake_folder.CLASSES]
  assert meta["thing_classes"] == list(fake_folder.THINGS) and meta["has_instances"] is True
  with open(os.path.join(reloaded.data_dir, "metadata.json")) as f:
    assert json.load(f)["class_names"] == ["background", "road", "car", "person"]


def test_folder_without_instances_and_own_ignore_label(tmp_path):
  expected = fake_folder.write(str(tmp_path / "root"), ignore_label=200, instances=False)
  builder = _prepare("segjax_folder", tmp_path / "root", tmp_path / "tfds")
  reloaded = tfds.builder("segjax_folder", data_dir=str(tmp_path / "tfds"))
  assert reloaded.info.metadata["has_instances"] is False
  for split in ("train", "validation"):
    for want in expected[split]:
      want["instance"] = np.zeros((want["height"], want["width"]), np.uint16)
    _check_split(builder, split, expected[split], exact_image=True, instances=True)
  assert any((want["semantic"] == 255).any() for want in expected["train"])  # 200 was stored as 255


def _folder_error(tmp_path, change, match):
  root = str(tmp_path / "root")
  if os.path.exists(root):
    shutil.rmtree(root)
  fake_folder.write(root)
  change(root)
  return _prepare_fails("segjax_folder", root, tmp_path / "tfds", match)


def _write_json(path, value):
  with open(path, "w") as f:
    json.dump(value, f)


def test_folder_errors_before_any_pixel(tmp_path):
  classes = os.path.join(str(tmp_path / "root"), "classes.json")
  _folder_error(tmp_path, lambda root: os.remove(classes), f"Missing '{re.escape(classes)}'")
  _folder_error(tmp_path, lambda root: _write_json(classes, [{"name": "a"}]), "non-empty \"classes\" list")
  _folder_error(tmp_path, lambda root: _write_json(classes, {"classes": [{"name": "a"}, {"thing": True}]}),
                "Class 1 in .* needs a \"name\"")
  low_ignore = {"classes": fake_folder.CLASSES, "ignore_label": 3}
  _folder_error(tmp_path, lambda root: _write_json(classes, low_ignore),
                "\"ignore_label\" .* is 3; it must be an integer from 4")
  _folder_error(tmp_path, lambda root: shutil.rmtree(os.path.join(root, "images", "val")),
                re.escape(os.path.join(str(tmp_path / "root"), "images", "validation")))
  missing = fake_folder.path(str(tmp_path / "root"), "train", "alley.jpg", "semantic")
  _folder_error(tmp_path, lambda root: os.remove(missing), f"Missing label file '{re.escape(missing)}'")
  missing = fake_folder.path(str(tmp_path / "root"), "val", "b.png", "instance")
  _folder_error(tmp_path, lambda root: os.remove(missing), f"Missing label file '{re.escape(missing)}'")


def test_folder_bad_label_files(tmp_path):
  semantic = fake_folder.path(str(tmp_path / "root"), "train", "street.png", "semantic")

  def out_of_range(root):
    label = np.asarray(Image.open(semantic)).copy()
    label[0, 0] = 4
    _save_label(semantic, label)

  _folder_error(tmp_path, out_of_range, f"Label 4 in '{re.escape(semantic)}' is outside the 4 classes")
  message = _folder_error(tmp_path, lambda root: Image.open(semantic).convert("RGB").save(semantic),
                          f"'{re.escape(semantic)}' has 3 channels")
  assert "single-channel" in message
  _folder_error(tmp_path, lambda root: Image.open(semantic).resize((32, 25)).save(semantic),
                f"'{re.escape(semantic)}' is 32x25 but its image is 32x24")


def test_folder_instance_id_on_two_classes_is_named(tmp_path):
  semantic = fake_folder.path(str(tmp_path / "root"), "train", "street.png", "semantic")
  instance = fake_folder.path(str(tmp_path / "root"), "train", "street.png", "instance")

  def shared_id(root):  # a car and a person numbered alike
    labels, ids = np.asarray(Image.open(semantic)).copy(), np.asarray(Image.open(instance)).copy()
    labels[0, 0:2], ids[0, 0:2] = (2, 3), 7
    _save_label(semantic, labels)
    Image.fromarray(ids).save(instance)

  _folder_error(tmp_path, shared_id, f"An instance id in '{re.escape(instance)}' covers pixels of two classes")
