"""The train loop: loss falls, resume equals straight, errors are sentences (devices: test_multihost)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config, tiny_panoptic_config
from segjax import train
from segjax.checkpoint import Checkpointer
from segjax.errors import UserError
from segjax.models import build_segmenter


def _lines(workdir, kind):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["kind"] == kind]


def _params(workdir):
  return jax.device_get(_restore(workdir).params)


def _restore(workdir, config=None):
  config = config or tiny_config("")
  model = build_segmenter(config.model, config.dataset.num_classes)
  tx, _ = train.make_optimizer(config)
  like = train.create_train_state(model, tx, jax.random.key(0), config.input.crop_size)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 3)
  state, _ = ckpt.restore(ckpt.latest_step(), like)
  ckpt.close()
  return state


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
  """Eight steps in one go; the reference for the resume test."""
  workdir = str(tmp_path_factory.mktemp("straight"))
  train.train_and_evaluate(tiny_config(data_dir), workdir)
  return workdir


def test_run_writes_metrics_summaries_checkpoints_and_config(straight):
  evals = _lines(straight, "eval")
  assert [e["step"] for e in evals] == [4, 8]
  assert 0.0 <= evals[-1]["miou"] <= 1.0 and 0.0 <= evals[-1]["pixel_acc"] <= 1.0
  assert set(evals[-1]["iou_per_class"]) == {"background", "disk", "square", "triangle"}
  assert [t["step"] for t in _lines(straight, "train")] == list(range(1, 9))
  assert json.load(open(os.path.join(straight, "config.json")))["total_steps"] == 8
  assert sorted(os.listdir(os.path.join(straight, "checkpoints"))) == ["4", "8"]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(straight, "tensorboard")))


def test_loss_falls(data_dir, tmp_path):
  train.train_and_evaluate(tiny_config(data_dir, total_steps=40, eval_every=40, log_every=5), str(tmp_path))
  losses = [t["loss"] for t in _lines(str(tmp_path), "train")]
  assert np.mean(losses[-2:]) < 0.7 * losses[0]


def test_resume_equals_straight_run(data_dir, straight, tmp_path):
  workdir = str(tmp_path)
  train.train_and_evaluate(tiny_config(data_dir, total_steps=4), workdir)
  train.train_and_evaluate(tiny_config(data_dir), workdir)  # raising total_steps continues
  # Same batches: the per-step losses after the restart match the uninterrupted run.
  np.testing.assert_allclose([t["loss"] for t in _lines(workdir, "train")],
                             [t["loss"] for t in _lines(straight, "train")], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               _params(workdir), _params(straight))


def test_finished_run_does_no_training(data_dir, straight):
  before = open(os.path.join(straight, "metrics.jsonl")).read()
  state = train.train_and_evaluate(tiny_config(data_dir), straight)
  assert int(state.step) == 8
  assert open(os.path.join(straight, "metrics.jsonl")).read() == before


def test_batch_not_divisible_by_devices(data_dir, tmp_path):
  with pytest.raises(UserError, match=r"config.batch_size=12 is not divisible by the 8 devices; "
                                      r"set it to a multiple of 8"):
    train.train_and_evaluate(tiny_config(data_dir, batch_size=12), str(tmp_path))


def test_unwritable_workdir(data_dir, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(UserError, match=r"Cannot write to workdir .*choose a writable --workdir"):
    train.train_and_evaluate(tiny_config(data_dir), str(blocker / "run"))


def test_unknown_model_and_dataset(data_dir, tmp_path):
  with pytest.raises(UserError, match=r"Unknown semantic_head 'fcn'"):
    train.train_and_evaluate(tiny_config(data_dir, **{"model.semantic_head": "fcn"}), str(tmp_path))
  with pytest.raises(UserError, match=r"Unknown dataset 'cityscapez'"):
    train.train_and_evaluate(tiny_config(data_dir, **{"dataset.name": "cityscapez"}), str(tmp_path))


def test_corrupt_checkpoint_is_named_and_kept(data_dir, straight, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  shutil.copytree(straight, workdir)
  state_dir = os.path.join(workdir, "checkpoints", "8", "state")
  damaged = []
  for root, _, files in os.walk(state_dir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "wb") as f:
        f.write(b"garbage")
      damaged.append(path)
  with pytest.raises(UserError, match=r"Cannot read checkpoint step 8 .* left untouched"):
    train.train_and_evaluate(tiny_config(data_dir, total_steps=12), workdir)
  assert all(open(p, "rb").read() == b"garbage" for p in damaged)  # nothing deleted or overwritten
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4", "8"]


def test_bfloat16_compute_trains_and_evaluates(data_dir, tmp_path):
  """bfloat16 convolutions, float32 parameters, loss, softmax and metrics, in training and eval."""
  config = tiny_panoptic_config(data_dir, total_steps=4, **{"model.dtype": "bfloat16"})
  model = build_segmenter(config.model, config.dataset.num_classes)
  tx, schedule = train.make_optimizer(config)
  state = train.create_train_state(model, tx, jax.random.key(0), 48)
  batch = {"image": np.zeros((2, 48, 48, 3), np.float32), "semantic": np.zeros((2, 48, 48), np.int32),
           "center": np.zeros((2, 48, 48), np.float32), "center_weight": np.ones((2, 48, 48), np.float32),
           "offsets": np.zeros((2, 48, 48, 2), np.float32),
           "offset_weight": np.ones((2, 48, 48), np.float32)}
  jaxpr = jax.make_jaxpr(lambda s, b: train.train_step(
      s, b, model=model, tx=tx, schedule=schedule, loss_config=config.loss,
      ignore_label=255))(state, batch)
  convs = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name == "conv_general_dilated"]
  assert convs and all(e.invars[0].aval.dtype == jnp.bfloat16 for e in convs)
  _, metrics = jax.eval_shape(lambda s, b: train.train_step(
      s, b, model=model, tx=tx, schedule=schedule, loss_config=config.loss, ignore_label=255),
                              state, batch)
  assert all(m.dtype == jnp.float32 for m in jax.tree.leaves(metrics))

  state = train.train_and_evaluate(config, str(tmp_path))
  assert all(p.dtype == np.float32 for p in jax.tree.leaves(state.params))  # float32 master weights
  losses = [t["loss"] for t in _lines(str(tmp_path), "train")]
  assert np.all(np.isfinite(losses))
  last = _lines(str(tmp_path), "eval")[-1]
  assert all(0.0 <= last[k] <= 1.0 for k in ("miou", "mask_ap", "pq"))


def _equations(jaxpr):
  """Every equation of a jaxpr, including those inside nested jaxprs (pjit, custom_vjp, ...)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          yield from _equations(inner)


def test_nan_loss_stops_with_a_sentence(data_dir, tmp_path):
  config = tiny_config(data_dir, **{"optimizer.lr": 1e30})
  with pytest.raises(UserError, match=r"Loss became nan at step \d+; lower config.optimizer.lr"):
    train.train_and_evaluate(config, str(tmp_path))
