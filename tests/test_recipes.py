"""Every published-recipe config (configs/<dataset>/*.py), in its tiny variant, on a few files written
in its dataset's official layout: each reads its dataset into batches of its own shapes and targets
and builds its model for the dataset's classes; one recipe of each head also runs end to end through
`python -m segjax.main` (each such run compiles for a minute: one per head, not one per dataset)."""
import glob
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fakes import ade20k, cityscapes, coco_panoptic, folder, pascal_voc
from segjax import config as config_lib
from segjax import data, heads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKES = {"coco_panoptic": coco_panoptic, "cityscapes": cityscapes, "ade20k": ade20k,
         "pascal_voc": pascal_voc, "folder": folder}
RECIPES = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "*", "*.py"))
                 if os.path.basename(os.path.dirname(p)) in FAKES)
# One recipe per head, on three readers; the other recipes share their trainer, evaluator and writers.
END_TO_END = ("ade20k/semantic.py", "coco_panoptic/panoptic.py", "cityscapes/mask_former_r50.py",
              "coco_panoptic/eomt_vit_l.py", "ade20k/eomt_vit_l.py")
_ID = lambda p: os.path.relpath(p, os.path.join(ROOT, "configs"))


def test_every_dataset_has_a_semantic_recipe_and_the_panoptic_ones_exist():
  names = {os.path.relpath(p, os.path.join(ROOT, "configs")) for p in RECIPES}
  assert {f"{d}/semantic.py" for d in FAKES} | {"cityscapes/panoptic.py", "coco_panoptic/panoptic.py"} <= names


def _tiny_recipe(path, tmp_path):
  """The recipe's tiny variant on fake files written under tmp_path, and the examples expected of them."""
  config = config_lib.load_config_file(f"{path}:tiny")
  expected = FAKES[config.dataset.name].write(str(tmp_path / "raw"))
  with config.unlocked():
    config.dataset.manual_dir, config.dataset.data_dir = str(tmp_path / "raw"), str(tmp_path / "tfds")
  return config, expected


def test_end_to_end_recipes_cover_every_head():
  used = {config_lib.load_config_file(os.path.join(ROOT, "configs", p)).model.head for p in END_TO_END}
  assert used == set(heads.HEADS) and set(END_TO_END) <= set(map(_ID, RECIPES))


@pytest.mark.parametrize("path", RECIPES, ids=_ID)
def test_recipe_reads_its_dataset_and_builds_its_model(path, tmp_path):
  config, expected = _tiny_recipe(path, tmp_path)
  resolved, names = data.resolve(config)
  assert resolved.dataset.num_classes == len(names) > 1
  head = heads.get(resolved)
  batch = next(data.train_batches(resolved, 0, 2))
  crop = tuple(resolved.input.crop_size)
  assert batch["image"].shape == (2, *crop, 3) and 0 <= batch["image"].min() <= batch["image"].max() <= 1
  labels = np.unique(batch["semantic"])
  assert set(labels) - {resolved.dataset.ignore_label} <= set(range(len(names))) and len(labels) > 1
  targets = head.synthetic_targets(resolved, jax.random.key(0), 2, crop[0])
  assert set(targets) <= set(batch), "the pipeline makes every target the head's loss reads"
  assert all(batch[k].shape[0] == 2 and batch[k].ndim == v.ndim for k, v in targets.items())
  evaluated = data.EvalData(resolved, host_batch=4)
  assert sum(int(b["valid"].sum()) for b in evaluated) == len(expected["validation"])
  model = heads.build_segmenter(resolved.model, resolved.dataset.num_classes)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
  outputs = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 64, 64, 3)), train=False), variables)
  semantic = jax.eval_shape(lambda o: head.postprocess(o, resolved)["semantic"], outputs)
  assert semantic.shape == (1, 64, 64)


@pytest.mark.slow
@pytest.mark.parametrize("path", [os.path.join(ROOT, "configs", p) for p in END_TO_END], ids=_ID)
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
