"""segjax.predict: writes its picture, masks and COCO results; bad input gets one sentence."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
import pytest

from conftest import tiny_panoptic_config
from segjax import predict, train, visualize
from segjax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("panoptic_run"))
  config = tiny_panoptic_config(data_dir, total_steps=2, eval_every=2,
                                **{"postprocess.center_threshold": 0.0})
  train.train_and_evaluate(config, workdir)
  return workdir


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
  config, model, variables = predict.load_run(run)
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
def test_predict_rejects_bad_input(run, tmp_path):
  with pytest.raises(UserError, match=r"Image '.*missing.png' does not exist"):
    predict.predict_files(run, [str(tmp_path / "missing.png")], str(tmp_path / "out"))
  text = tmp_path / "notes.png"
  text.write_text("not an image")
  with pytest.raises(UserError, match=r"is not an image that Pillow can read"):
    predict.predict_files(run, [str(text)], str(tmp_path / "out"))
  empty = tmp_path / "empty_run"
  empty.mkdir()
  (empty / "config.json").write_text(open(os.path.join(run, "config.json")).read())
  with pytest.raises(UserError, match=r"No checkpoint in .*train first"):
    predict.predict_files(str(empty), [str(text)], str(tmp_path / "out"))


def test_predict_command_exits_with_one_sentence(tmp_path):
  result = subprocess.run([sys.executable, "-m", "segjax.predict", f"--workdir={tmp_path}",
                           "--images=x.png", f"--out={tmp_path}/o"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode != 0
  assert "segjax: error: No config.json in" in result.stderr and "Traceback" not in result.stderr
