"""segjax.predict: writes its picture, masks and COCO results; bad input gets one sentence."""
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
import pytest

from segjax import predict, visualize
from segjax.engine import trained_run
from segjax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run(panoptic_run):
  return panoptic_run


@pytest.mark.slow
def test_run_draws_its_curves(run):
  with Image.open(os.path.join(run, "curves.png")) as im:
    assert im.size[0] > 400


@pytest.mark.slow
def test_predict_writes_picture_masks_and_results(run, tmp_path):
  image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8)
  path = str(tmp_path / "scene.png")
  Image.fromarray(image).save(path)
  out = str(tmp_path / "out")
  predict.predict_files(run, [path], out)
  pred = np.load(os.path.join(out, "scene_masks.npz"))
  # The semantic map is the model's argmax on the image padded to a multiple of 32, cropped back.
  config, model, variables, _ = trained_run.load(run)
  padded = np.zeros((1, 64, 96, 3), np.float32)
  padded[0, :50, :70] = image / 255.0
  logits = model.apply(variables, padded, train=False)["semantic_logits"][0, :50, :70]
  np.testing.assert_array_equal(pred["semantic"], np.argmax(logits, -1))
  # Every valid instance is a set of thing pixels with its own id in the panoptic map.
  valid = np.nonzero(pred["valid"])[0]
  assert len(valid) > 0 and pred["instance_map"].shape == (50, 70)
  for k in valid:
    mask = pred["instance_map"] == k + 1
    assert mask.any() and np.isin(pred["semantic"][mask], config.dataset.thing_classes).all()
    np.testing.assert_array_equal(pred["panoptic"] == pred["classes"][k] * 1000 + k + 1, mask)
  # The COCO results are those instances, and the picture shows the image and the semantic map.
  results = json.load(open(os.path.join(out, "scene_results.json")))
  assert len(results) == len(valid)
  for r, k in zip(results, valid):
    np.testing.assert_array_equal(mask_utils.decode(r["segmentation"]), pred["instance_map"] == k + 1)
    assert r["category_id"] == pred["classes"][k] and r["score"] == pytest.approx(pred["scores"][k])
  with Image.open(os.path.join(out, "scene.png")) as im:
    picture = np.asarray(im.convert("RGB"))
  assert picture.shape == (50, 3 * 70, 3)
  np.testing.assert_array_equal(picture[:, :70], image)
  np.testing.assert_array_equal(picture[:, 70:140], visualize.colorize(pred["semantic"], 4))


@pytest.mark.slow
def test_predict_reads_the_variables_alone_never_the_optimizer_state(run, tmp_path):
  # A config.json naming another optimizer (SGD's state has another structure than AdamW's, which
  # the run saved): restoring the whole train state would fail, the variables alone do not care.
  workdir = tmp_path / "run"
  shutil.copytree(run, workdir)
  config = json.load(open(workdir / "config.json"))
  config["optimizer"]["name"] = "sgd"
  (workdir / "config.json").write_text(json.dumps(config))
  variables = trained_run.load(str(workdir)).variables
  original = trained_run.load(run).variables
  assert set(variables) == {"params", "batch_stats"}
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(original), strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_bad_files_get_their_sentence_and_the_others_are_written(run, tmp_path):
  photos = tmp_path / "photos"
  photos.mkdir()
  rng = np.random.default_rng(1)
  Image.fromarray(rng.integers(0, 255, (40, 90, 3), np.uint8)).save(photos / "wide.png")
  Image.fromarray(rng.integers(0, 255, (70, 33), np.uint8)).save(photos / "gray.jpg")
  (photos / "notes.png").write_text("not an image")
  (photos / "readme.txt").write_text("not an image either, and not taken for one")
  other = tmp_path / "other"
  other.mkdir()
  Image.fromarray(rng.integers(0, 255, (20, 20, 4), np.uint8)).save(other / "wide.png")  # same name
  out = tmp_path / "out"
  _, written, problems = predict.predict_files(
      run, [str(photos), str(tmp_path / "other" / "*.png"), str(tmp_path / "missing.png"),
            str(tmp_path / "none*.jpg")], str(out))
  assert written == ["gray", "wide", "wide_2"]
  assert len(problems) == 3, problems
  said = "\n".join(problems)
  assert re.search(r"'.*notes.png' is not an image that Pillow can read", said)
  assert re.search(r"No file matches '.*none\*.jpg'", said)
  assert re.search(r"Image '.*missing.png' does not exist", said)
  for stem, shape in (("gray", (70, 33)), ("wide", (40, 90)), ("wide_2", (20, 20))):
    assert np.load(out / f"{stem}_masks.npz")["semantic"].shape == shape
    assert (out / f"{stem}.png").exists() and (out / f"{stem}_results.json").exists()
  assert not (out / "notes_masks.npz").exists()
  # A run's own faults stop everything before any image is read.
  empty = tmp_path / "empty_run"
  empty.mkdir()
  (empty / "config.json").write_text(open(os.path.join(run, "config.json")).read())
  with pytest.raises(UserError, match=r"No checkpoint in .*train first"):
    predict.predict_files(str(empty), [str(photos)], str(tmp_path / "out2"))


@pytest.mark.slow
def test_the_command_writes_the_good_files_and_exits_non_zero_for_the_bad(run, tmp_path):
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
  (tmp_path / "b.png").write_text("not an image")
  result = subprocess.run([sys.executable, "-m", "segjax.predict", f"--workdir={run}", f"--images={tmp_path}",
                           f"--out={tmp_path}/o"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr
  assert "segjax: error: '" in result.stderr and "b.png' is not an image" in result.stderr
  assert "1 of the inputs could not be segmented" in result.stderr and "Traceback" not in result.stderr
  assert (tmp_path / "o" / "a_masks.npz").exists()
  # Its own lines alone: which step wrote what, and the sentences; Orbax's come back with -v 0.
  said = (result.stdout + result.stderr).splitlines()
  assert len(said) == 3, said
  assert said[0] == f"Segmented 1 image into {tmp_path}/o with step 2 of {run}.", said
  verbose = subprocess.run([sys.executable, "-m", "segjax.predict", f"--workdir={run}", f"--images={tmp_path}",
                            f"--out={tmp_path}/v", "-v", "0"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
  assert "b.png' is not an image" in verbose.stderr and "CheckpointManager" in verbose.stderr


def _saved(tmp_path, name, image, **kw):
  path = str(tmp_path / name)
  image.save(path, **kw)
  return path


def test_photos_of_every_kind_are_read_upright_in_rgb(tmp_path):
  rng = np.random.default_rng(2)
  rgb = rng.integers(0, 255, (30, 50, 3), np.uint8)
  # Grayscale: the one channel three times.
  gray = rng.integers(0, 255, (30, 50), np.uint8)
  np.testing.assert_array_equal(predict.read_image(_saved(tmp_path, "g.png", Image.fromarray(gray))),
                                np.repeat(gray[..., None], 3, -1) / np.float32(255))
  # RGBA: composited on black.
  rgba = rng.integers(0, 255, (30, 50, 4), np.uint8)
  np.testing.assert_allclose(predict.read_image(_saved(tmp_path, "a.png", Image.fromarray(rgba))),
                             rgba[..., :3] / 255 * (rgba[..., 3:] / 255), atol=1e-6)
  # 16-bit grayscale, as scanners and depth cameras write it: scaled by 65535, not clipped at 255.
  deep = rng.integers(0, 65535, (30, 50), np.uint16)
  np.testing.assert_allclose(predict.read_image(_saved(tmp_path, "d.png", Image.fromarray(deep))),
                             np.repeat(deep[..., None], 3, -1) / 65535, atol=1e-6)
  # EXIF orientation 6 (the camera held upright, the sensor sideways): turned 90 degrees clockwise.
  exif = Image.Exif()
  exif[0x0112] = 6
  turned = predict.read_image(_saved(tmp_path, "e.png", Image.fromarray(rgb), exif=exif))
  np.testing.assert_array_equal(turned, np.rot90(rgb, k=-1) / np.float32(255))
  # A file cut short gets its sentence.
  whole = open(_saved(tmp_path, "t.png", Image.fromarray(rgb)), "rb").read()
  (tmp_path / "t.png").write_bytes(whole[:len(whole) // 2])
  with pytest.raises(UserError, match=r"'.*t.png' is not an image that Pillow can read"):
    predict.read_image(str(tmp_path / "t.png"))


def test_predict_command_exits_with_one_sentence(tmp_path):
  result = subprocess.run([sys.executable, "-m", "segjax.predict", f"--workdir={tmp_path}",
                           "--images=x.png", f"--out={tmp_path}/o"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode != 0
  assert "segjax: error: No config.json in" in result.stderr and "Traceback" not in result.stderr


def test_a_file_whose_name_looks_like_a_pattern_is_a_file(tmp_path):
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "shot[1].png")
  paths, problems = predict.image_paths([str(tmp_path / "shot[1].png"), str(tmp_path / "*.png")])
  assert paths == [str(tmp_path / "shot[1].png")] and not problems
