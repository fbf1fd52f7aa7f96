"""Every published-recipe config (configs/<dataset>/*.py) runs end to end in its tiny variant, through
`python -m segjax.main`, on a few files written in its dataset's official layout."""
import glob
import json
import os
import subprocess
import sys

import pytest

from fakes import ade20k, cityscapes, coco_panoptic, folder, pascal_voc
from segjax import config as config_lib
from segjax import heads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKES = {"coco_panoptic": coco_panoptic, "cityscapes": cityscapes, "ade20k": ade20k,
         "pascal_voc": pascal_voc, "folder": folder}
RECIPES = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "*", "*.py"))
                 if os.path.basename(os.path.dirname(p)) in FAKES)


def test_every_dataset_has_a_semantic_recipe_and_the_panoptic_ones_exist():
  names = {os.path.relpath(p, os.path.join(ROOT, "configs")) for p in RECIPES}
  assert {f"{d}/semantic.py" for d in FAKES} | {"cityscapes/panoptic.py", "coco_panoptic/panoptic.py"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: os.path.relpath(p, os.path.join(ROOT, "configs")))
def test_recipe_trains_and_evaluates_on_fake_files(path, tmp_path):
  recipe = config_lib.load_config_file(path)
  name = recipe.dataset.name
  expected = FAKES[name].write(str(tmp_path / "raw"))
  workdir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, "-m", "segjax.main", f"--config={path}:tiny", f"--workdir={workdir}",
       f"--config.dataset.manual_dir={tmp_path / 'raw'}", f"--config.dataset.data_dir={tmp_path / 'tfds'}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(workdir / "metrics.jsonl") as f:
    evals = [line for line in map(json.loads, f) if line["kind"] == "eval"]
  assert [e["step"] for e in evals] == [3] and 0 <= evals[0]["miou"] <= 1
  labels = os.listdir(workdir / "eval" / "3" / "labels")  # one label PNG per validation image
  assert sorted(labels) == sorted(f"{e['file_name']}_pred_labelIds.png" for e in expected["validation"])
  with open(workdir / "config.json") as f:
    resolved = json.load(f)
  assert resolved["dataset"]["num_classes"] == len(json.load(open(workdir / "class_names.json")))
  if "panoptic" in heads.get(recipe).metrics:
    assert "pq" in evals[0] and "mask_ap" in evals[0]
    assert os.path.exists(workdir / "eval" / "3" / "panoptic_pred.json")


def test_recipes_take_their_classes_from_the_dataset():
  for path in RECIPES:
    c = config_lib.load_config_file(path)
    assert c.dataset.num_classes is None and c.dataset.thing_classes is None, path
