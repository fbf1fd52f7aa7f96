"""segjax.benchmark: runs on CPU without TensorFlow and prints its JSON; the bench configs build the
models they name."""
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from segjax.config import load_config_file
from segjax.errors import UserError
from segjax.heads import build_segmenter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "configs", "bench")

# The CLI, run as `python -m segjax.benchmark`; then no TensorFlow module may have been loaded.
_RUN_CLI = """
import runpy, sys
sys.argv = ["segjax.benchmark", "--config=" + sys.argv[1]]
try:
  runpy.run_module("segjax.benchmark", run_name="__main__", alter_sys=True)
except SystemExit as e:
  assert not e.code, e.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets"))
assert not loaded, loaded
"""


@pytest.mark.slow
def test_benchmark_runs_on_cpu_without_tensorflow_and_prints_json():
  result = subprocess.run([sys.executable, "-c", _RUN_CLI, os.path.join(BENCH, "tiny.py")],
                          capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
                          env=dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu"))
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
  assert [r["mode"] for r in records] == ["train", "infer"]
  for r in records:
    assert r["batch"] == 8 and r["size"] == 64 and r["devices"] == 1
    assert r["step_ms"] > 0 and r["images_per_s"] == pytest.approx(8 / r["step_ms"] * 1e3, rel=0.01)
    assert len(r["round_ms"]) == 3 and r["step_ms"] == min(r["round_ms"])  # the fastest of 3 rounds
    assert r["flops_per_image"] > 0 and r["planned_mem_gib"] > 0
    assert r["achieved_tflops"] == pytest.approx(
        r["flops_per_image"] * 8 / (r["step_ms"] / 1e3) / 1e12, rel=0.02, abs=2e-3)
  train, infer = records
  assert train["flops_per_image"] > infer["flops_per_image"]  # backward pass and optimizer on top


def test_against_takes_turns_round_by_round_and_gives_the_ratio(monkeypatch):
  from segjax import benchmark  # pylint: disable=g-import-not-at-top
  config = load_config_file(os.path.join(BENCH, "tiny.py"))
  config.benchmark.modes, config.benchmark.rounds, config.benchmark.steps = ("infer",), 3, 1
  against = config.copy_and_resolve_references()
  against.benchmark.image_size = 32
  turns = []
  timed = benchmark._round

  def logged(step, carry, args, steps):
    turns.append(args[-1].shape[1])  # the side's image size
    return timed(step, carry, args, steps)
  monkeypatch.setattr(benchmark, "_round", logged)
  mine, theirs, ratio = benchmark.run(config, against=against)
  assert turns == [64, 32, 64, 32, 64, 32]
  assert (mine["size"], theirs["size"]) == (64, 32)
  assert len(mine["round_ms"]) == len(theirs["round_ms"]) == 3
  assert ratio["seconds_per_image_ratio"] == pytest.approx(theirs["images_per_s"] / mine["images_per_s"], rel=0.01)
  against.benchmark.modes = ("train", "infer")
  with pytest.raises(UserError, match=r"^--config times infer and --against train, infer: give both the same "
                                      r"config\.benchmark\.modes\.$"):
    benchmark.run(config, against=against)


def _shapes(config_name, size):
  config = load_config_file(os.path.join(BENCH, config_name))
  model = build_segmenter(config.model, config.dataset.num_classes)
  images = jnp.zeros((2, size, size, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
  outputs = jax.eval_shape(lambda v: model.apply(v, images, train=False, capture_intermediates=True),
                           variables)
  return config, variables, outputs


def test_deeplabv3_bench_config_is_torchvisions_deeplabv3_resnet50():
  config, variables, outputs = _shapes("deeplabv3_r50_os8.py", 512)
  # torchvision.models.segmentation.deeplabv3_resnet50(num_classes=21, aux_loss=False) has
  # 39,638,869 parameters (its BatchNorm running statistics are buffers, as ours are batch_stats).
  assert sum(math.prod(x.shape) for x in jax.tree.leaves(variables["params"])) == 39_638_869
  logits, inter = outputs
  assert logits["semantic_logits"].shape == (2, 512, 512, 21)
  backbone_out = inter["intermediates"]["backbone"]["__call__"][0]["out"]
  assert backbone_out.shape == (2, 64, 64, 2048) and backbone_out.dtype == jnp.bfloat16  # OS 8
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables["params"]))
  assert config.batch_size == 16 and config.benchmark.image_size == 512


def test_panoptic_bench_config_builds_both_heads():
  config, _, (outputs, _) = _shapes("panoptic_r50_os16.py", 512)
  assert outputs["semantic_logits"].shape == (2, 512, 512, config.dataset.num_classes)
  assert outputs["center"].shape == (2, 512, 512) and outputs["offsets"].shape == (2, 512, 512, 2)


@pytest.mark.slow
def test_input_benchmark_times_the_pipeline_of_any_config(data_dir):
  result = subprocess.run(
      [sys.executable, "-m", "segjax.benchmark", "--input", f"--config={ROOT}/configs/panoptic.py",
       "--config.dataset.name=synthetic_scenes/tiny", f"--config.dataset.data_dir={data_dir}",
       "--config.batch_size=8", "--config.benchmark.warmup_steps=1", "--config.benchmark.steps=3"],
      capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
  assert record["mode"] == "input" and record["batch"] == 8 and record["instance_targets"]
  assert record["crop"] == [160, 160] and record["images_per_s"] > 0
  assert record["images_per_s_per_core"] == pytest.approx(record["images_per_s"] / record["cpu_cores"], rel=0.01)


def test_scoring_benchmark_times_both_ways_and_an_overlapped_eval(capsys):
  from segjax import benchmark  # pylint: disable=g-import-not-at-top
  from tiny_configs import tiny_panoptic_config  # pylint: disable=g-import-not-at-top
  record = benchmark.run_scoring(tiny_panoptic_config(None), size=(48, 64), images=7, workers=2)
  assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == record
  assert record["mode"] == "scoring" and record["size"] == [48, 64] and record["images"] == 7
  assert record["workers"] == record["timing"]["scoring_workers"] == 2
  assert record["same_figures"]  # in this process, on the pool and through evaluate: the same figures
  assert record["images_per_s"] > 0 and record["images_per_s_in_process"] > 0
  # The eval's stand-in device takes as long as the pool's scoring: the eval at least that long.
  assert record["device_seconds"] == pytest.approx(record["host_seconds"], rel=0.01)
  assert record["eval_over_longer"] > 0.9


def test_scoring_benchmark_needs_a_head_of_instances():
  from segjax import benchmark  # pylint: disable=g-import-not-at-top
  from tiny_configs import tiny_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match=r"^--scoring times the scoring of instances and panoptic maps: give a config "
                                      r"whose head predicts them, e\.g\. configs/cityscapes/panoptic\.py\.$"):
    benchmark.run_scoring(tiny_config(None), size=(48, 64), images=2)


def test_a_step_that_does_not_fit_is_one_sentence(monkeypatch):
  from segjax import benchmark  # pylint: disable=g-import-not-at-top
  config = load_config_file(os.path.join(BENCH, "mask_former_r50_512.py"))
  monkeypatch.setattr(benchmark, "_CONFIG", type("Flag", (), {"value": config})())
  monkeypatch.setattr(benchmark, "_INPUT", type("Flag", (), {"value": False})())
  monkeypatch.setattr(benchmark, "_SCORING", type("Flag", (), {"value": False})())
  monkeypatch.setattr(benchmark, "_AGAINST", type("Flag", (), {"value": None})())

  def out_of_memory(config, against):
    raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 40110126288 bytes.")
  monkeypatch.setattr(benchmark, "run", out_of_memory)
  with pytest.raises(SystemExit) as stopped:
    benchmark.main(["segjax.benchmark"])
  assert str(stopped.value.code) == (
      "segjax.benchmark: error: batch 16 at 512x512 does not fit on cpu (Out of memory allocating "
      "40110126288 bytes); lower --config.batch_size or --config.benchmark.image_size.")

  def failed(config, against):
    raise jax.errors.JaxRuntimeError("INTERNAL: something else")
  monkeypatch.setattr(benchmark, "run", failed)
  with pytest.raises(jax.errors.JaxRuntimeError):  # other runtime errors are not dressed as memory
    benchmark.main(["segjax.benchmark"])


def test_against_with_input_or_scoring_is_one_sentence(monkeypatch):
  from segjax import benchmark  # pylint: disable=g-import-not-at-top
  config = load_config_file(os.path.join(BENCH, "tiny.py"))
  flag = lambda value: type("Flag", (), {"value": value})()
  monkeypatch.setattr(benchmark, "_CONFIG", flag(config))
  monkeypatch.setattr(benchmark, "_AGAINST", flag(config))
  for mode in ("_INPUT", "_SCORING"):
    monkeypatch.setattr(benchmark, "_INPUT", flag(mode == "_INPUT"))
    monkeypatch.setattr(benchmark, "_SCORING", flag(mode == "_SCORING"))
    with pytest.raises(SystemExit) as stopped:
      benchmark.main(["segjax.benchmark"])
    assert str(stopped.value.code) == ("segjax.benchmark: error: --against times two models' steps in turn; it "
                                       "does not go with --input or --scoring.")
