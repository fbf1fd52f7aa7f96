"""Starting from converted weights: config.model.init_from, frozen BatchNorm and the backbone's
learning-rate multiplier."""
import functools
import os
import subprocess
import sys

from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from safetensors.numpy import save_file

import parity
from conftest import tiny_config
from segjax import convert, weights
from segjax.engine import optimizer, parallel, train
from segjax.engine.checkpoint import Checkpointer
from segjax.errors import UserError
from segjax.heads import build_segmenter
from segjax.models import resnet18
from segjax.weights import pretrained
from test_convert import FIXTURE, ROOT, _state


def _resnet_config(data_dir, init_from, backbone="resnet18", **backbone_kwargs):
  backbone_kwargs = backbone_kwargs or {"width": 8}
  c = tiny_config(data_dir, **{"model.backbone": backbone, "model.init_from.path": init_from,
                               "total_steps": 2, "eval_every": 2, "checkpoint_every": 1})
  c.model.backbone_kwargs = ml_collections.ConfigDict(backbone_kwargs)
  return c


def _restore(workdir, config):
  """(model, state) at the latest checkpoint."""
  model = build_segmenter(config.model, config.dataset.num_classes)
  tx, _ = optimizer.make_optimizer(config)
  like = jax.eval_shape(lambda: train.create_train_state(model, tx, jax.random.key(0), config.input.crop_size))
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 3)
  state, _ = ckpt.restore(ckpt.latest_step(), like)
  ckpt.close()
  return model, jax.device_get(state)


def _init(frozen=False, seed=0):
  """Variables of a narrow ResNet-18 drawn with NumPy (compiling Flax's init takes ~15 s here)."""
  shapes = jax.eval_shape(lambda: resnet18(width=8, frozen_bn=frozen).init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  rng = np.random.default_rng(seed)
  draw = lambda path, s: (rng.uniform(0.5, 1.5, s.shape) if path[-1].key == "var"
                          else rng.normal(0, 0.3, s.shape)).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.cache
def _jitted(frozen, train):
  model = resnet18(width=8, frozen_bn=frozen)
  return jax.jit(lambda v, x: model.apply(v, x, train=train, mutable=["batch_stats"]))


def _apply(frozen, variables, x, train=False):
  """Outputs, and with `train` the batch statistics after the call."""
  out, updates = _jitted(frozen, train)(variables, x)
  return (out, updates["batch_stats"]) if train else out


def _tiny_weights(path, seed):
  """A weights file of a narrow ResNet-18 backbone with variables drawn from `seed`."""
  variables = _init(seed=seed)
  weights.save(path, {c: {"backbone": v} for c, v in variables.items()}, {"arch": "resnet18"})
  return variables


def _torch_features_match(workdir, config, name):
  """The run's backbone computes what torchvision's computed on the fixture's image."""
  model, state = _restore(workdir, config)
  features = model.backbone.apply({"params": state.params["backbone"],
                                   "batch_stats": state.batch_stats["backbone"]},
                                  parity.image(parity.DILATED_SIZE), train=False)
  for key in ("stem", "stage1", "stage2", "stage3", "stage4"):
    ref = FIXTURE[f"{name}/225x225/{key}"]
    assert parity.relative_error(parity.sample(np.asarray(features[key])), ref) < 1e-4, key
  return state


@pytest.mark.slow
def test_run_starts_from_converted_weights_and_its_resume_never_reads_them(data_dir, tmp_path):
  """ResNet-18 from the fixture's torchvision weights, BatchNorm frozen and the backbone's rate 0:
  after a step, and after a resume whose weights file no longer loads, the run's backbone still
  computes what torchvision's computed, while the head trains."""
  name = "/".join(parity.SMALL)
  checkpoint, converted = str(tmp_path / "r18.safetensors"), str(tmp_path / "r18_segjax.npz")
  save_file(_state(name), checkpoint)
  convert.convert_file(checkpoint, converted, "resnet18", "torchvision")
  config = _resnet_config(data_dir, converted, output_stride=32, frozen_bn=True)
  config.optimizer.backbone_lr_multiplier = 0.0
  config.total_steps = 1
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  one = _torch_features_match(workdir, config, name)
  assert set(one.params["backbone"]["stem"]) == {"conv"}  # frozen BatchNorm: nothing of it trains
  with open(converted, "r+b") as f:  # if the resumed run read the file, it would fail
    f.truncate(100)
  config.total_steps = 2
  train.train_and_evaluate(config, workdir)
  two = _torch_features_match(workdir, config, name)
  assert int(two.step) == 2
  head = jax.tree.map(lambda a, b: np.abs(a - b).max(), one.params["semantic_head"], two.params["semantic_head"])
  assert max(jax.tree.leaves(head)) > 0  # the head trained on


def test_setup_then_init_from_gives_torchvisions_backbone_and_statistics(tmp_path):
  """What a recipe does before its first step (plain BatchNorm, default options)."""
  name = "/".join(parity.SMALL)
  checkpoint, converted = str(tmp_path / "r18.safetensors"), str(tmp_path / "r18_segjax.safetensors")
  save_file(_state(name), checkpoint)
  convert.convert_file(checkpoint, converted, "resnet18", "torchvision")
  config = _resnet_config("", converted, output_stride=32)
  run = train.setup(config, train.parallel.make_mesh())
  state = run.state.replace(**pretrained.load({"params": run.state.params,
                                               "batch_stats": run.state.batch_stats}, config.model))
  backbone = {"params": state.params["backbone"], "batch_stats": state.batch_stats["backbone"]}
  features = jax.jit(lambda v, x: run.model.backbone.apply(v, x, train=False))(
      backbone, parity.image(parity.DILATED_SIZE))
  for key in ("stem", "stage1", "stage2", "stage3", "stage4"):
    ref = FIXTURE[f"{name}/225x225/{key}"]
    assert parity.relative_error(parity.sample(np.asarray(features[key])), ref) < 1e-4, key
  torch_state = _state(name)
  np.testing.assert_array_equal(backbone["batch_stats"]["stage2"]["block1"]["downsample"]["bn"]["var"],
                                torch_state["layer2.0.downsample.1.running_var"])
  np.testing.assert_array_equal(backbone["params"]["stem"]["bn"]["scale"], torch_state["bn1.weight"])


@pytest.mark.parametrize("name", ["resnet18-f37072fd.pth", "model.safetensors"])
def test_an_unconverted_checkpoint_is_named_before_any_work(tmp_path, name):
  path = tmp_path / name
  save_file({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}, str(path))  # torch's names
  with pytest.raises(UserError, match=(
      rf"^config.model.init_from.path '{path}' is not a segjax weights file; if it is a PyTorch "
      rf"checkpoint, convert it first: python -m segjax.convert --arch=resnet18 --in={path} "
      r"--out=FILE.safetensors.$")):
    pretrained.check(_resnet_config("", str(path)).model)


def test_init_from_variables_match_by_name_into_a_frozen_batchnorm(tmp_path):
  path = str(tmp_path / "w.npz")
  variables = _tiny_weights(path, 3)
  frozen = _init(frozen=True)
  assert "bn" not in frozen["params"]["stem"] and set(frozen["batch_stats"]["stem"]["bn"]) == {
      "scale", "bias", "mean", "var"}
  like = {c: {"backbone": v} for c, v in frozen.items()}
  loaded, meta = weights.load_parts(like, path, ("backbone",))
  assert meta["arch"] == "resnet18" and len(loaded) == len(traverse_util.flatten_dict(like))
  np.testing.assert_array_equal(loaded[("batch_stats", "backbone", "stem", "bn", "scale")],
                                variables["params"]["stem"]["bn"]["scale"])
  as_frozen = traverse_util.unflatten_dict(loaded)
  x = jnp.asarray(parity.image((32, 32)))
  ours = _apply(True, {k: v["backbone"] for k, v in as_frozen.items()}, x)
  ref = _apply(False, variables, x)
  np.testing.assert_allclose(ours["out"], ref["out"], rtol=1e-5, atol=1e-5)


def test_frozen_batchnorm_neither_updates_nor_trains():
  x = jnp.asarray(parity.image((32, 32)))
  variables = _init(frozen=True)
  variables = {"params": variables["params"],
               "batch_stats": jax.tree.map(lambda v: v + 0.5, variables["batch_stats"])}
  out, stats = _apply(True, variables, x, train=True)
  jax.tree.map(np.testing.assert_array_equal, stats, variables["batch_stats"])
  np.testing.assert_array_equal(out["out"], _apply(True, variables, x)["out"])
  # the unfrozen model's training output uses the batch's statistics: it differs
  plain = _init()
  assert not np.allclose(_apply(False, plain, x, train=True)[0]["out"], _apply(False, plain, x)["out"])


def test_backbone_learning_rate_multiplier_scales_only_the_backbone():
  config = tiny_config("", **{"optimizer.name": "sgd", "optimizer.momentum": 0.0,
                              "optimizer.weight_decay": 0.0, "optimizer.lr": 0.5,
                              "optimizer.backbone_lr_multiplier": 0.1})
  tx, _ = optimizer.make_optimizer(config)
  params = {"backbone": {"w": jnp.ones(3)}, "semantic_head": {"w": jnp.ones(2)}}
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates["backbone"]["w"], -0.05)
  np.testing.assert_allclose(updates["semantic_head"]["w"], -0.5)
  config.optimizer.backbone_lr_multiplier = 1.0  # the default: the optimizer of before, state and all
  tx, _ = optimizer.make_optimizer(config)
  assert "MaskedState" not in str(jax.tree.structure(tx.init(params)))  # old checkpoints restore


def test_fresh_run_without_its_weights_file_stops_before_any_work(tmp_path):
  config = _resnet_config("", str(tmp_path / "missing.safetensors"))
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert str(e.value) == (
      f"config.model.init_from.path '{tmp_path}/missing.safetensors' does not exist. Convert the "
      "checkpoint the config's docstring names with python -m segjax.convert --arch=resnet18 "
      f"--in=CHECKPOINT --out={tmp_path}/missing.safetensors (add --source=timm for timm's), or pass "
      "--config.model.init_from.path= to start from random weights.")
  assert not os.path.exists(tmp_path / "run" / "config.json")


@pytest.mark.parametrize("problem,message", [
    ("width", r"holds backbone/stage1/block1/conv1/bn/bias with shape \(8,\) where this model needs \(16,\)"),
    ("arch", r"holds resnet34 weights but config.model.backbone is resnet18"),
    ("parts", r"config.model.init_from.parts names 'decoder', which this model does not have; choose "
              r"from backbone, semantic_head"),
    ("depth", r"\(resnet18\) lacks 'backbone/stage1/block2/conv1/bn/bias' and 39 more variables of this "
              r"model; convert weights of the architecture config.model names."),
])
def test_weights_that_do_not_fit_the_model_are_named(tmp_path, problem, message):
  path = str(tmp_path / "w.npz")
  _tiny_weights(path, 1)
  config = _resnet_config("", path, width=16)
  if problem == "arch":  # a resnet34 file: named as such before any variable is compared
    flat, _ = weights.load(path)
    weights.save(path, traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()}),
                 {"arch": "resnet34"})
  elif problem == "parts":
    config.model.init_from.parts = ("decoder",)
  elif problem == "depth":
    flat, meta = weights.load(path)
    weights.save(path, traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()
                                                     if "block2" not in k}), meta)
    config.model.backbone_kwargs.width = 8
  model = build_segmenter(config.model, 4)
  tx, _ = optimizer.make_optimizer(config)
  state = jax.eval_shape(lambda: train.create_train_state(model, tx, jax.random.key(0), (32, 32)))
  with pytest.raises(UserError, match=message):
    pretrained.load({"params": state.params, "batch_stats": state.batch_stats}, config.model)


def test_recipe_without_its_backbone_file_says_how_to_make_it(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "segjax.main", "--config=configs/cityscapes/semantic.py",
       f"--workdir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300, cwd=ROOT,
      env=dict(os.environ, HOME=str(tmp_path)))  # no ~/.cache/segjax here
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  (line,) = [l for l in result.stderr.splitlines() if l.startswith("segjax")]
  assert line == (
      "segjax: error: config.model.init_from.path '~/.cache/segjax/resnet50_imagenet1k_v1.safetensors' "
      "does not exist. Convert the checkpoint the config's docstring names with python -m segjax.convert "
      "--arch=resnet50 --in=CHECKPOINT --out=~/.cache/segjax/resnet50_imagenet1k_v1.safetensors (add "
      "--source=timm for timm's), or pass --config.model.init_from.path= to start from random weights.")
  assert not os.path.exists(tmp_path / "run" / "config.json")


def test_processes_that_see_another_file_or_none_all_stop(tmp_path, monkeypatch):
  """What each process decides from the others' answers (the collective runs in test_multihost)."""
  path = str(tmp_path / "w.npz")
  _tiny_weights(path, 1)
  config = _resnet_config("", path)
  model = build_segmenter(config.model, 4)
  tx, _ = optimizer.make_optimizer(config)
  state = jax.eval_shape(lambda: train.create_train_state(model, tx, jax.random.key(0), (32, 32)))
  like = {"params": state.params, "batch_stats": state.batch_stats}
  # process 1 lacks the file: process 0, which has it, stops too and says where to look
  monkeypatch.setattr(parallel, "from_every_process", lambda v: np.stack([v, ~v]))
  with pytest.raises(UserError, match=r"'.*w.npz' cannot be used on process\(es\) 1; their logs say why.$"):
    pretrained.check(config.model)
  # process 1 read other numbers
  monkeypatch.setattr(parallel, "from_every_process", lambda v: np.stack([v, v if v.dtype == bool else v + 1]))
  with pytest.raises(UserError, match=r"holds other weights on process\(es\) 1 than on process 0; give "
                     r"every host the same file"):
    pretrained.load(like, config.model)
