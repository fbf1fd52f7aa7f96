"""The train loop: what it logs, resume equals straight, errors are sentences (devices: test_multihost)."""
import glob
import json
import math
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config, tiny_panoptic_config
from segjax import data, heads, visualize
from segjax.engine import curves, optimizer, preemption, train
from segjax.engine.checkpoint import Checkpointer
from segjax.errors import UserError


def _lines(workdir, kind):
  """The records of `kind`, without the eval's timing, which differs from run to run."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in r.items() if k != "timing"} for r in map(json.loads, f) if r["kind"] == kind]


def _params(workdir):
  return jax.device_get(_restore(workdir).params)


def _restore(workdir, config=None):
  config = config or tiny_config("")
  model = heads.build_segmenter(config.model, config.dataset.num_classes)
  tx, _ = optimizer.make_optimizer(config)
  like = train.create_train_state(model, tx, jax.random.key(0), config.input.crop_size)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 3)
  state, _ = ckpt.restore(ckpt.latest_step(), like)
  ckpt.close()
  return state


def _config(data_dir, **overrides):
  """The tiny config with a warm-up and a cosine decay, so that a wrong schedule position shows."""
  return tiny_config(data_dir, **{"optimizer.schedule": "cosine", "optimizer.warmup_steps": 2,
                                  **overrides})


def _lr(step, total=8, warmup=2, peak=1e-2):
  """The learning rate of 1-based `step`: it runs with the schedule at step - 1."""
  t = step - 1
  if t < warmup:
    return peak * t / warmup
  return peak * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
  """Eight steps in one go; the reference for the resume tests."""
  workdir = str(tmp_path_factory.mktemp("straight"))
  train.train_and_evaluate(_config(data_dir), workdir)
  return workdir


@pytest.mark.slow
def test_run_writes_metrics_summaries_checkpoints_and_config(straight):
  evals = _lines(straight, "eval")
  assert [e["step"] for e in evals] == [4, 8]
  assert 0.0 <= evals[-1]["miou"] <= 1.0 and 0.0 <= evals[-1]["pixel_acc"] <= 1.0
  assert set(evals[-1]["iou_per_class"]) == {"background", "disk", "square", "triangle"}
  assert [t["step"] for t in _lines(straight, "train")] == list(range(1, 9))
  assert json.load(open(os.path.join(straight, "config.json")))["total_steps"] == 8
  assert sorted(os.listdir(os.path.join(straight, "checkpoints"))) == ["4", "8"]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(straight, "tensorboard")))


@pytest.mark.slow
def test_loss_falls(data_dir, tmp_path):
  train.train_and_evaluate(tiny_config(data_dir, total_steps=40, eval_every=40, log_every=5), str(tmp_path))
  losses = [t["loss"] for t in _lines(str(tmp_path), "train")]
  assert np.mean(losses[-2:]) < 0.7 * losses[0]


@pytest.mark.slow
def test_logged_learning_rate_warms_up_then_decays(straight):
  logged = [t["learning_rate"] for t in _lines(straight, "train")]
  np.testing.assert_allclose(logged, [_lr(s) for s in range(1, 9)], atol=1e-9)
  assert logged[0] == 0.0 and max(logged) == pytest.approx(1e-2)


@pytest.mark.slow
def test_tensorboard_holds_the_logged_scalars_and_eval_pictures(data_dir, straight):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  scalars, pictures = {}, {}
  for path in glob.glob(os.path.join(straight, "tensorboard", "events.out.tfevents*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.HasField("image"):
          pictures[event.step] = tf.io.decode_png(value.image.encoded_image_string).numpy()
        else:
          scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  for kind in ("train", "eval"):
    for record in _lines(straight, kind):
      for key in ("loss", "learning_rate", "miou", "pixel_acc"):
        if key in record:
          assert scalars[f"{kind}/{key}"][record["step"]] == pytest.approx(record[key], rel=1e-6)
  assert sorted(scalars["eval/miou"]) == [4, 8] and sorted(scalars["train/loss"]) == list(range(1, 9))
  # Each picture: image | truth | prediction for the first two eval images, side by side.
  first = next(iter(data.EvalData(_config(data_dir), 8)))
  assert sorted(pictures) == [4, 8]
  for picture in pictures.values():
    assert picture.shape == (64, 2 * 3 * 64, 3)
    for i in range(2):
      row = picture[:, i * 192:(i + 1) * 192]
      np.testing.assert_array_equal(row[:, :64], np.round(first["image"][i] * 255))
      np.testing.assert_array_equal(row[:, 64:128], visualize.colorize(first["semantic"][i], 4))


@pytest.mark.slow
def test_curves_plot_the_logged_records(straight):
  with open(os.path.join(straight, "metrics.jsonl")) as f:
    fig = curves.draw([json.loads(line) for line in f])
  loss, evals = fig.axes
  (line,) = loss.lines
  np.testing.assert_array_equal(line.get_xdata(), range(1, 9))
  np.testing.assert_allclose(line.get_ydata(), [t["loss"] for t in _lines(straight, "train")])
  plotted = {l.get_label(): (list(l.get_xdata()), list(l.get_ydata())) for l in evals.lines}
  assert set(plotted) == {"miou", "pixel_acc"}
  for key, (steps, values) in plotted.items():
    assert steps == [4, 8] and values == [e[key] for e in _lines(straight, "eval")]
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(os.path.join(straight, "curves.png")) as im:
    assert im.size == (1100, 400)


def _stop_after(monkeypatch, steps):
  """Makes the next run die (as if killed) when it asks for batch `steps` + 1."""
  real = data.train_batches

  def batches(*args):
    for i, batch in enumerate(real(*args)):
      if i == steps:
        raise KeyboardInterrupt
      yield batch

  monkeypatch.setattr(data, "train_batches", batches)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_straight_run(data_dir, straight, tmp_path, monkeypatch):
  workdir = str(tmp_path)
  _stop_after(monkeypatch, 4)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(_config(data_dir), workdir)
  monkeypatch.undo()
  assert [t["step"] for t in _lines(workdir, "train")] == [1, 2, 3, 4]
  train.train_and_evaluate(_config(data_dir), workdir)
  # Same batches and the same place on the schedule: every step's loss and rate match, and so do
  # the final parameters.
  for key in ("loss", "learning_rate"):
    np.testing.assert_allclose([t[key] for t in _lines(workdir, "train")],
                               [t[key] for t in _lines(straight, "train")], rtol=1e-5, atol=1e-9)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               _params(workdir), _params(straight))


@pytest.mark.slow
@pytest.mark.parametrize("at", [4, 8])
def test_a_stop_at_an_eval_step_saves_first_and_the_rerun_scores_that_step_once(data_dir, straight, tmp_path,
                                                                                 monkeypatch, at):
  workdir = str(tmp_path)
  monkeypatch.setattr(preemption.Watcher, "stop", lambda self, step: step == at)  # as if signalled there
  with pytest.raises(preemption.Stopped):
    train.train_and_evaluate(_config(data_dir), workdir)
  monkeypatch.undo()
  assert [e["step"] for e in _lines(workdir, "eval")] == [4][:at // 4 - 1]  # step `at`: not scored yet
  train.train_and_evaluate(_config(data_dir), workdir)
  assert _lines(workdir, "eval") == _lines(straight, "eval")
  jax.tree.map(np.testing.assert_array_equal, _params(workdir), _params(straight))
  assert sorted(os.listdir(os.path.join(workdir, "eval", "8", "labels"))) == sorted(
      os.listdir(os.path.join(straight, "eval", "8", "labels")))  # the final model's official files
  before = open(os.path.join(workdir, "metrics.jsonl")).read()
  train.train_and_evaluate(_config(data_dir), workdir)  # finished: nothing is scored again
  assert open(os.path.join(workdir, "metrics.jsonl")).read() == before


@pytest.mark.slow
def test_raised_total_steps_continues_on_the_longer_schedule(data_dir, straight, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(straight, workdir)
  train.train_and_evaluate(_config(data_dir, total_steps=12), workdir)
  logged = {t["step"]: t["learning_rate"] for t in _lines(workdir, "train")}
  assert sorted(logged) == list(range(1, 13))
  # Steps 9..12 run where a 12-step schedule is at steps 8..11, not at the end of the 8-step one.
  np.testing.assert_allclose([logged[s] for s in range(9, 13)], [_lr(s, total=12) for s in range(9, 13)],
                             atol=1e-9)
  assert logged[9] > 1e-3 > logged[8]
  # The rate applied is the optimizer's own count, restored with the state: it is at 12 too.
  state = _restore(workdir)
  counts = [int(x) for p, x in jax.tree_util.tree_leaves_with_path(state.opt_state)
            if "count" in jax.tree_util.keystr(p) and "notfinite" not in jax.tree_util.keystr(p)]
  assert counts and all(c == int(state.step) == 12 for c in counts)


@pytest.mark.slow
def test_finished_run_does_no_training_and_keeps_its_files(data_dir, straight):
  before = {name: open(os.path.join(straight, name)).read() for name in ("metrics.jsonl", "config.json")}
  state = train.train_and_evaluate(_config(data_dir, **{"optimizer.lr": 0.5}), straight)
  assert int(state.step) == 8
  for name, text in before.items():  # config.json still says how the run was trained
    assert open(os.path.join(straight, name)).read() == text, name


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
  with pytest.raises(UserError, match=r"Unknown decoder 'fcn'"):
    train.train_and_evaluate(tiny_config(data_dir, **{"model.decoder": "fcn"}), str(tmp_path))
  with pytest.raises(UserError, match=r"Unknown dataset 'cityscapez'"):
    train.train_and_evaluate(tiny_config(data_dir, **{"dataset.name": "cityscapez"}), str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")  # nothing made before the data is known


def _array_files(workdir, step):
  """The files that hold checkpoint `step`'s arrays (tensorstore's OCDBT data files)."""
  return [p for p in glob.glob(os.path.join(workdir, "checkpoints", str(step), "state", "**", "d", "*"),
                               recursive=True) if os.path.isfile(p)]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_run_resumes_from_the_one_before(
    data_dir, straight, tmp_path, damage, caplog):
  workdir = str(tmp_path / "run")
  shutil.copytree(straight, workdir)
  for path in _array_files(workdir, 8):
    if damage == "truncated":
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    else:
      os.remove(path)
  damaged = {os.path.relpath(p, os.path.join(workdir, "checkpoints", "8")): open(p, "rb").read()
             for p in glob.glob(os.path.join(workdir, "checkpoints", "8", "**"), recursive=True) if os.path.isfile(p)}
  caplog.set_level("INFO")
  train.train_and_evaluate(_config(data_dir), workdir)
  said = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
  assert len(said) == 1 and said[0].startswith("Checkpoint step 8 cannot be read (") and said[0].endswith(
      f"), so it was moved to {os.path.join(workdir, 'damaged_checkpoints', '8')} and the run resumes from "
      "step 4, the newest that reads."), said
  kept = os.path.join(workdir, "damaged_checkpoints", "8")  # byte for byte what was damaged
  assert {os.path.relpath(p, kept): open(p, "rb").read() for p in glob.glob(os.path.join(kept, "**"), recursive=True)
          if os.path.isfile(p)} == damaged
  # Steps 5..8 again: the same parameters as the straight run, each step logged once.
  jax.tree.map(np.testing.assert_array_equal, _params(workdir), _params(straight))
  assert [t["step"] for t in _lines(workdir, "train")] == list(range(1, 9))
  assert [(e["step"], e["miou"]) for e in _lines(workdir, "eval")] == [(e["step"], e["miou"]) for e in
                                                                       _lines(straight, "eval")]


@pytest.mark.slow
def test_when_no_checkpoint_reads_the_run_stops_with_a_sentence_and_moves_nothing(data_dir, straight, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(straight, workdir)
  damaged = []
  for step in (4, 8):
    for path in _array_files(workdir, step):
      with open(path, "wb") as f:
        f.write(b"garbage")
      damaged.append(path)
  with pytest.raises(UserError, match=r"^Cannot read checkpoint step 8 .* left untouched"):
    train.train_and_evaluate(tiny_config(data_dir, total_steps=12), workdir)
  assert all(open(p, "rb").read() == b"garbage" for p in damaged)  # nothing deleted or overwritten
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4", "8"]
  assert not os.path.exists(os.path.join(workdir, "damaged_checkpoints"))


@pytest.mark.slow
def test_an_interrupted_save_is_never_the_latest(data_dir, straight, tmp_path):
  """What an interrupted save leaves on a local disk: Orbax's temporary directory, never renamed."""
  workdir = str(tmp_path / "run")
  shutil.copytree(straight, workdir)
  checkpoints = os.path.join(workdir, "checkpoints")
  os.rename(os.path.join(checkpoints, "8"), os.path.join(checkpoints, "8.orbax-checkpoint-tmp-1234"))
  ckpt = Checkpointer(checkpoints, 3)
  assert ckpt.latest_step() == 4
  ckpt.close()
  train.train_and_evaluate(_config(data_dir), workdir)
  assert sorted(os.listdir(checkpoints)) == ["4", "8"]  # the leftover is gone, step 8 saved again
  jax.tree.map(np.testing.assert_array_equal, _params(workdir), _params(straight))


@pytest.mark.slow
def test_bfloat16_compute_trains_and_evaluates(data_dir, tmp_path):
  """bfloat16 convolutions, float32 parameters, loss, softmax and metrics, in training and eval."""
  config = tiny_panoptic_config(data_dir, total_steps=4, **{"model.dtype": "bfloat16"})
  model = heads.build_segmenter(config.model, config.dataset.num_classes)
  tx, schedule = optimizer.make_optimizer(config)
  state = train.create_train_state(model, tx, jax.random.key(0), (48, 48))
  batch = {"image": np.zeros((2, 48, 48, 3), np.float32), "semantic": np.zeros((2, 48, 48), np.int32),
           "center": np.zeros((2, 48, 48), np.float32), "center_weight": np.ones((2, 48, 48), np.float32),
           "offsets": np.zeros((2, 48, 48, 2), np.float32),
           "offset_weight": np.ones((2, 48, 48), np.float32)}
  jaxpr = jax.make_jaxpr(lambda s, b: train.train_step(
      s, b, model=model, tx=tx, schedule=schedule, head=heads.get(config), config=config))(state, batch)
  convs = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name == "conv_general_dilated"]
  assert convs and all(e.invars[0].aval.dtype == jnp.bfloat16 for e in convs)
  _, metrics = jax.eval_shape(lambda s, b: train.train_step(
      s, b, model=model, tx=tx, schedule=schedule, head=heads.get(config), config=config), state, batch)
  assert all(m.dtype == jnp.float32 for m in jax.tree.leaves(metrics))

  state = train.train_and_evaluate(config, str(tmp_path))
  assert all(p.dtype == np.float32 for p in jax.tree.leaves(state.params))  # float32 master weights
  lines = _lines(str(tmp_path), "train")
  assert np.all(np.isfinite([t["loss"] for t in lines]))
  for t in lines:  # the instance losses are logged beside the total
    assert t["loss"] == pytest.approx(config.loss.semantic_weight * t["semantic_ce"]
                                      + config.loss.center_weight * t["center_mse"]
                                      + config.loss.offset_weight * t["offset_l1"], rel=1e-4)
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


def _poison(monkeypatch, step):
  """Makes the image of training step `step` (1-based) NaN: its loss and gradient are not finite."""
  real = data.train_batches

  def batches(config, start, host_batch):
    for i, batch in enumerate(real(config, start, host_batch), start + 1):
      yield {**batch, "image": batch["image"] * np.nan} if i == step else batch

  monkeypatch.setattr(data, "train_batches", batches)


@pytest.mark.slow
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
  _poison(monkeypatch, 3)
  config = tiny_config(data_dir, total_steps=6, checkpoint_every=1, log_every=5)
  with pytest.raises(UserError, match=r"^Loss became nan at step 3; the last good checkpoint, step 2, is "
                     r"kept: lower config.optimizer.lr, set config.optimizer.grad_clip_norm, or let "
                     r"config.optimizer.skip_nonfinite=N skip up to N such steps in a row.$"):
    train.train_and_evaluate(config, str(tmp_path))
  ckpt = Checkpointer(os.path.join(str(tmp_path), "checkpoints"), 3)
  assert ckpt.latest_step() == 2
  ckpt.close()
  assert np.all(np.isfinite(np.concatenate([np.ravel(x) for x in jax.tree.leaves(_params(str(tmp_path)))])))


@pytest.mark.slow
def test_skip_nonfinite_skips_the_step_and_counts_it(data_dir, tmp_path, monkeypatch):
  config = tiny_config(data_dir, total_steps=3, eval_every=3, checkpoint_every=3,
                       **{"optimizer.skip_nonfinite": 1})
  before = train.train_and_evaluate(tiny_config(data_dir, total_steps=2, eval_every=2, checkpoint_every=2,
                                                **{"optimizer.skip_nonfinite": 1}), str(tmp_path / "two"))
  _poison(monkeypatch, 3)
  after = train.train_and_evaluate(config, str(tmp_path / "three"))
  # Step 3 was not applied: parameters and BatchNorm statistics are step 2's.
  jax.tree.map(np.testing.assert_array_equal, jax.device_get((after.params, after.batch_stats)),
               jax.device_get((before.params, before.batch_stats)))
  lines = _lines(str(tmp_path / "three"), "train")
  assert [t["skipped_steps"] for t in lines] == [0, 0, 1] and math.isnan(lines[2]["loss"])
  # Two in a row are more than skip_nonfinite=1 allows: the second is applied, and the run stops.
  monkeypatch.undo()
  real = data.train_batches
  monkeypatch.setattr(data, "train_batches", lambda *a: ({**b, "image": b["image"] * np.nan} if i >= 1 else b
                                                        for i, b in enumerate(real(*a))))
  with pytest.raises(UserError, match=r"^Loss became nan at step 3 after more than 1 non-finite steps in a row; "
                     r"no checkpoint was saved"):
    train.train_and_evaluate(config, str(tmp_path / "again"))


@pytest.mark.slow
def test_nan_loss_stops_with_a_sentence(data_dir, tmp_path):
  config = tiny_config(data_dir, **{"optimizer.lr": 1e30})
  with pytest.raises(UserError, match=r"Loss became nan at step \d+; no checkpoint was saved: lower "
                     r"config.optimizer.lr"):
    train.train_and_evaluate(config, str(tmp_path))
