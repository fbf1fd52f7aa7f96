"""segjax.predict: writes its picture, masks and COCO results; bad input gets one sentence."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from conftest import tiny_panoptic_config
from segjax import predict, train
from segjax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("panoptic_run"))
  config = tiny_panoptic_config(data_dir, total_steps=2, eval_every=2,
                                **{"postprocess.center_threshold": 0.0})
  train.train_and_evaluate(config, workdir)
  return workdir


def test_run_draws_its_curves(run):
  with Image.open(os.path.join(run, "curves.png")) as im:
    assert im.size[0] > 400


def test_predict_writes_picture_masks_and_results(run, tmp_path):
  path = str(tmp_path / "scene.png")
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8)).save(path)
  out = str(tmp_path / "out")
  predict.predict_files(run, [path], out)
  with Image.open(os.path.join(out, "scene.png")) as im:
    assert im.size == (3 * 70, 50)
  masks = np.load(os.path.join(out, "scene_masks.npz"))
  assert masks["semantic"].shape == (50, 70) and masks["masks"].shape[1:] == (50, 70)
  results = json.load(open(os.path.join(out, "scene_results.json")))
  assert len(results) == int(masks["valid"].sum())
  assert all({"image_id", "category_id", "segmentation", "score"} <= set(r) for r in results)


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
