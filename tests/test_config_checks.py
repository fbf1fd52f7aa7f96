"""Every config value is checked before any work: a bad one ends `segjax.main` with one sentence that
names the key, the value given and what would be accepted, with no traceback and no workdir made."""
import os
import re
import subprocess
import sys
import time

import ml_collections
import pytest

from segjax import config as config_lib
from segjax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (override args, the sentence after "segjax: error: ", as a regex matched against all of it).
# The config is configs/semantic.py (crop (160, 160), lr 0.004, 1500 steps, warm-up 50), or the
# config file the args start with.
ROWS = [
    # Types, as config_flags parses the command line.
    (["--config.batch_size=abc"],
     r"config\.batch_size is 'abc' on the command line: give an integer \(the config file has 16\)\."),
    (["--config.batch_size=1.5"],
     r"config\.batch_size is '1\.5' on the command line: give an integer \(the config file has 16\)\."),
    (["--config.optimizer.lr=abc"],
     r"config\.optimizer\.lr is 'abc' on the command line: give a number \(the config file has 0\.004\)\."),
    (["--config.input.flip=maybe"],
     r"config\.input\.flip is 'maybe' on the command line: give true or false \(the config file has True\)\."),
    (["--config.input.crop_size=(1,"],
     r"config\.input\.crop_size is '\(1,' on the command line: give a tuple, quoted: "
     r"--config\.input\.crop_size='\(1, 2\)' \(the config file has \(160, 160\)\)\."),
    (["--config.model.backbone_kwargs=abc"],
     r"config\.model\.backbone_kwargs is 'abc' on the command line: give a dict of keyword arguments, quoted: "
     r"--config\.model\.backbone_kwargs=\"\{'width': 32\}\" \(the config file has \{\}\)\."),
    # Types that config_flags lets through (a string is a 1-tuple to it).
    (["--config.input.crop_size=abc"],
     r"config\.input\.crop_size is \('abc',\): give \(height, width\), two integers >= 1 \(or leave it unset\)\."),
    (["--config.eval.scales=abc"],
     r"config\.eval\.scales is \('abc',\): give one or more factors > 0, e\.g\. \(0\.75, 1\.0, 1\.25\)\."),
    # Ranges.
    (["--config.eval_batch_size=0"], r"config\.eval_batch_size is 0: give an integer >= 1\."),
    (["--config.total_steps=-5"], r"config\.total_steps is -5: give an integer >= 1\."),
    (["--config.log_every=0"], r"config\.log_every is 0: give an integer >= 1\."),
    (["--config.keep_checkpoints=0"], r"config\.keep_checkpoints is 0: give an integer >= 1\."),
    (["--config.input.crop_size=(0,160)"],
     r"config\.input\.crop_size is \(0, 160\): give \(height, width\), two integers >= 1 \(or leave it unset\)\."),
    (["--config.input.min_scale=0"], r"config\.input\.min_scale is 0\.0: give a number > 0\."),
    (["--config.loss.semantic_top_k=1.5"],
     r"config\.loss\.semantic_top_k is 1\.5: give a number in \(0, 1\], the fraction of pixels kept \(1: all\)\."),
    (["--config.optimizer.lr=0"], r"config\.optimizer\.lr is 0\.0: give a number > 0\."),
    (["--config.optimizer.weight_decay=-1e-4"], r"config\.optimizer\.weight_decay is -0\.0001: give a number >= 0\."),
    (["--config.optimizer.momentum=1.0"], r"config\.optimizer\.momentum is 1\.0: give a number in \[0, 1\)\."),
    (["--config.optimizer.skip_nonfinite=-1"],
     r"config\.optimizer\.skip_nonfinite is -1: give an integer >= 0, the non-finite steps in a row to skip "
     r"\(0: stop at the first\)\."),
    (["configs/panoptic.py", "--config.postprocess.center_threshold=1.5"],
     r"config\.postprocess\.center_threshold is 1\.5: give a number in \[0, 1\]\."),
    (["configs/panoptic.py", "--config.postprocess.top_k=0"],
     r"config\.postprocess\.top_k is 0: give an integer >= 1\."),
    (["configs/panoptic.py", "--config.postprocess.nms_kernel=4"],
     r"config\.postprocess\.nms_kernel is 4: give an odd integer >= 1, e\.g\. 7\."),
    (["--config.eval.margin=-1"], r"config\.eval\.margin is -1: give an integer >= 0 \(0: mmsegmentation's plain mean\)\."),
    (["--config.eval.window=(0,48)"], r"config\.eval\.window is \(0, 48\): give \(height, width\), each >= 1\."),
    # Names from a fixed set or a registry.
    (["--config.optimizer.name=adam"], r"config\.optimizer\.name is 'adam': choose adamw or sgd\."),
    (["--config.optimizer.schedule=linear"], r"config\.optimizer\.schedule is 'linear': choose constant, cosine, poly or step\."),
    (["--config.eval.mode=tiles"], r"config\.eval\.mode is 'tiles': choose whole or slide\."),
    (["--config.benchmark.modes=serve"], r"config\.benchmark\.modes is \('serve',\): give a tuple of train and/or infer\."),
    (["--config.model.dtype=float16"],
     r"Unknown dtype 'float16': choose one of bfloat16, float32 \(config\.model\.dtype\)\."),
    (["--config.model.backbone=resnet7"],
     r"Unknown backbone 'resnet7': choose one of convnext_base, .*, seed, .*vit_tiny_patch16 \(config\.model\.backbone\)\."),
    (["--config.model.decoder=centre"],
     r"Unknown decoder 'centre': choose one of deeplabv3plus, seed \(config\.model\.decoder\)\."),
    (["configs/panoptic.py", "--config.model.instance_decoder=centre"],
     r"Unknown instance_decoder 'centre': choose one of center_offset \(config\.model\.instance_decoder\)\."),
    (["--config.model.head=mask_formr"],
     r"Unknown head 'mask_formr': choose one of eomt, eomt_semantic, mask_former, panoptic_deeplab, semantic \(config\.model\.head\); "
     r"did you mean 'mask_former'\?"),
    # Keys of earlier versions, and of another head.
    (["--config.model.semantic_head=seed"],
     r"Unknown config key in --config\.model\.semantic_head=seed: config\.model\.semantic_head has moved to "
     r"config\.model\.decoder\."),
    (["--config.loss.center_weight=2"],
     r"Unknown config key in --config\.loss\.center_weight=2: config\.loss\.center_weight is a key of head "
     r"panoptic_deeplab, and config\.model\.head is 'semantic'; a config file changes its head with "
     r"segjax\.config\.set_head\."),
    (["--config.model.semantic_head_kwargs.hidden=8"],
     r"Unknown config key in --config\.model\.semantic_head_kwargs\.hidden=8: config\.model\.semantic_head_kwargs "
     r"has moved to config\.model\.decoder_kwargs\."),
    (["--config.model.instance_decoder_kwargs.hidden=8"],
     r"Unknown config key in --config\.model\.instance_decoder_kwargs\.hidden=8: config\.model\.instance_decoder_kwargs "
     r"is a key of head panoptic_deeplab, and config\.model\.head is 'semantic'; a config file changes its head "
     r"with segjax\.config\.set_head\."),
    (["--config.loss.center_weigth=2"],
     r"Unknown config key in --config\.loss\.center_weigth=2: 'center_weigth'; did you mean 'center_weight'\? "
     r"config\.loss\.center_weight is a key of head panoptic_deeplab, and config\.model\.head is 'semantic'; a "
     r"config file changes its head with segjax\.config\.set_head\."),
    # A head named on the command line, whose keys the config file does not hold.
    (["--config.model.head=panoptic_deeplab"],
     r"config\.model\.head is 'panoptic_deeplab', but the config holds the keys of head 'semantic': a head brings "
     r"keys of its own, so give a config file of head 'panoptic_deeplab', one that starts from "
     r"segjax\.config\.base_config\('panoptic_deeplab'\) or calls segjax\.config\.set_head\."),
    (["--config.model.head=panoptic_deeplab", "--config.loss.center_weight=2"],
     r"config\.model\.head is 'panoptic_deeplab', but the config holds the keys of head 'semantic': .*"),
    (["--config.model.head=panoptic_deeplab", "--config.loss.center_weigth=2"],
     r"config\.model\.head is 'panoptic_deeplab', but the config holds the keys of head 'semantic': .*"),
    (["--config.model.head=mask_former", "--config.model.decoder_kwargs.num_queries=8"],
     r"config\.model\.head is 'mask_former', but the config holds the keys of head 'semantic': .*"),
    (["--config.postprocess.top_kk=3"],
     r"Unknown config key in --config\.postprocess\.top_kk=3: 'top_kk'; did you mean 'top_k'\? config\.postprocess\.top_k "
     r"is a key of head panoptic_deeplab, and config\.model\.head is 'semantic'; a config file changes its head with "
     r"segjax\.config\.set_head\."),
    (["--config.loss.semantic_wieght=2"],
     r"Unknown config key in --config\.loss\.semantic_wieght=2: 'semantic_wieght'; did you mean 'semantic_weight'\?"),
    # Keys inside *_kwargs (a whole dict given on the command line).
    (["--config.model.backbone_kwargs={'widht': 4}"],
     r"config\.model\.backbone_kwargs has 'widht', which seed does not take \(it takes widths, depths, "
     r"features\); did you mean 'widths'\?"),
    (["--config.model.decoder_kwargs={'num_classes': 3}"],  # build_segmenter passes it itself
     r"config\.model\.decoder_kwargs has 'num_classes', which seed does not take; it takes hidden, refine\."),
    (["--config.model.backbone=resnet50", "--config.model.backbone_kwargs={'output_stride': 12}"],
     r"ResNet output_stride must be 8, 16 or 32, not 12 \(config\.model\.backbone_kwargs\)\."),
    # Relations.
    (["--config.optimizer.warmup_steps=1500"],
     r"config\.optimizer\.warmup_steps is 1500, not below config\.total_steps=1500: give fewer warm-up steps "
     r"than the run has \(0 for none\)\."),
    (["--config.input.min_scale=1.5"],
     r"config\.input\.min_scale is 1\.5, above config\.input\.max_scale=1\.25: give min_scale <= max_scale\."),
    (["--config.dataset.num_classes=4", "--config.dataset.thing_classes=(1,2,5)"],
     r"config\.dataset\.thing_classes is \(1, 2, 5\): class 5 is not one of the 4 classes of "
     r"config\.dataset\.num_classes; give indices 0\.\.3\."),
    (["--config.dataset.ignore_label=2", "--config.dataset.thing_classes=(1,2,3)"],
     r"config\.dataset\.ignore_label is 2, one of config\.dataset\.thing_classes \(1, 2, 3\): give a label "
     r"that is no class, e\.g\. 255\."),
    (["--config.dataset.num_classes=4", "--config.dataset.ignore_label=0"],
     r"config\.dataset\.ignore_label is 0, one of the 4 classes of config\.dataset\.num_classes \(0\.\.3\): "
     r"give a label that is no class, e\.g\. 255\."),
    (["--config.eval.mode=slide", "--config.eval.window=(64,64)", "--config.eval.stride=(80,32)"],
     r"config\.eval\.stride \(80, 32\) is larger than config\.eval\.window \(64, 64\): pixels between windows "
     r"would have no prediction; use a stride <= the window\."),
    (["--config.eval.mode=slide", "--config.eval.window=(300,300)", "--config.input.eval_size=(256,256)"],
     r"config\.eval\.window is \(300, 300\), larger than config\.input\.eval_size \(256, 256\), the dataset's "
     r"eval image size: give a window within it or config\.eval\.mode='whole'\."),
    (["--config.eval.mode=slide", "--config.input.eval_size=(128,128)"],  # the window defaults to the crop
     r"config\.eval\.window is unset, so the window is config\.input\.crop_size, which is \(160, 160\), larger "
     r"than config\.input\.eval_size \(128, 128\), the dataset's eval image size: give a window "
     r"within it or config\.eval\.mode='whole'\."),
    (["configs/panoptic.py", "--config.dataset.label_divisor=100", "--config.postprocess.top_k=100"],
     r"config\.postprocess\.top_k is 100, not below config\.dataset\.label_divisor=100: instance ids would run "
     r"into the next class's panoptic ids; give at most 99 instances\."),
    (["--config.model.init_from.path=/nonexistent/w.safetensors", "--config.model.init_from.parts=decoder"],
     r"config\.model\.init_from\.parts names 'decoder', which this model does not have; choose from "
     r"backbone, semantic_head\."),
]

# A config file that assigns a value of the wrong type: ml_collections refuses it at that line.
_BAD_FILE = '''from segjax.config import load_config_file


def get_config():
  c = load_config_file("configs/semantic.py")
  c.batch_size = "16"
  return c
'''

# A head's key of the wrong type: named by its whole path, though no other head has it.
_BAD_HEAD_KEY_FILE = '''from segjax.config import load_config_file


def get_config():
  c = load_config_file("configs/panoptic.py")
  c.postprocess.nms_kernel = 3.5
  return c
'''

# A config file with a typo inside a *_kwargs dict.
_TYPO_FILE = '''from segjax.config import load_config_file


def get_config():
  c = load_config_file("configs/pixel_control.py")
  c.model.backbone_kwargs.widht = 16
  return c
'''


def _run(args, workdir, config="configs/semantic.py"):
  if args and args[0].endswith(".py"):
    config, *args = args
  start = time.perf_counter()
  result = subprocess.run(
      [sys.executable, "-m", "segjax.main", f"--config={config}", f"--workdir={workdir}", *args],
      cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  return result, time.perf_counter() - start


def _assert_one_sentence(result, workdir, pattern):
  assert result.returncode != 0, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("segjax: error: "), result.stderr
  sentence = last[len("segjax: error: "):]
  assert re.fullmatch(pattern, sentence), sentence
  assert not os.path.exists(workdir)  # nothing made, not even the directory


@pytest.mark.parametrize("args,pattern", ROWS, ids=[" ".join(a) for a, _ in ROWS])
def test_a_bad_override_is_one_sentence_before_any_work(tmp_path, args, pattern):
  workdir = str(tmp_path / "run")
  result, seconds = _run(args, workdir)
  _assert_one_sentence(result, workdir, pattern)
  print(f"{seconds:.2f}s exit {result.returncode}: {result.stderr.strip().splitlines()[-1]}")


@pytest.mark.parametrize("body,pattern", [
    (_BAD_FILE, r".*/bad\.py line 6 \(`c\.batch_size = \"16\"`\) sets config\.batch_size to '16', a str: give an integer\."),
    (_BAD_HEAD_KEY_FILE, r".*/bad\.py line 6 \(`c\.postprocess\.nms_kernel = 3\.5`\) sets "
                         r"config\.postprocess\.nms_kernel to 3\.5, a float: give an integer\."),
    (_TYPO_FILE, r"config\.model\.backbone_kwargs has 'widht', which pixel does not take \(it takes width, depth, "
                 r"features\); did you mean 'width'\?"),
], ids=["wrong type", "a head's key of the wrong type", "kwargs typo"])
def test_a_bad_value_in_a_config_file_is_one_sentence(tmp_path, body, pattern):
  path = tmp_path / "bad.py"
  path.write_text(body)
  workdir = str(tmp_path / "run")
  result, _ = _run([], workdir, config=str(path))
  _assert_one_sentence(result, workdir, pattern)


def _set(config, key, value):
  *parents, last = key.split(".")
  for parent in parents:
    config = config[parent]
  config[last] = value


def _replace(config, key, **values):
  """A sub-dict replaced by one with `values`: how a value of another type gets past ml_collections."""
  _set(config, key, ml_collections.ConfigDict({**config[key].to_dict(), **values}))


@pytest.mark.parametrize("edit,pattern", [
    (lambda c: _set(c, "batch_size", True), r"config\.batch_size is True: give an integer >= 1\."),
    (lambda c: _set(c, "total_steps", None), r"config\.total_steps is None: give an integer >= 1\."),
    (lambda c: _replace(c, "postprocess", top_k=2.0), r"config\.postprocess\.top_k is 2\.0: give an integer >= 1\."),
    (lambda c: _set(c, "optimizer.lr", float("nan")), r"config\.optimizer\.lr is nan: give a number > 0\."),
    (lambda c: _set(c, "input.eval_size", [256]),
     r"config\.input\.eval_size is \(256,\): give \(height, width\), two integers >= 1 \(or leave it unset\)\."),
    (lambda c: _set(c, "eval.scales", ()),
     r"config\.eval\.scales is \(\): give one or more factors > 0, e\.g\. \(0\.75, 1\.0, 1\.25\)\."),
    (lambda c: _set(c, "model.decoder_kwargs.hiden", 8),
     r"config\.model\.decoder_kwargs has 'hiden', which seed does not take \(it takes hidden, refine\); "
     r"did you mean 'hidden'\?"),
    (lambda c: _set(c, "dataset", ml_collections.ConfigDict({"name": "cityscapes"})),
     r"config\.dataset lacks the key 'colormap' \(default None\); override single keys \(--config\.dataset\.colormap=\.\.\.\) "
     r"rather than a whole dict, and start config files from segjax\.config\.base_config\('panoptic_deeplab'\)\."),
    (lambda c: _set(c, "model.init_from.path", "w.npz") or _set(c, "model.init_from.parts", ()),
     r"config\.model\.init_from\.parts is empty; name the modules to load, e\.g\. \(\"backbone\",\)\."),
], ids=["bool for int", "None for int", "float for int", "nan", "one number", "no scales", "kwargs typo",
        "replaced dict", "no parts"])
def test_a_bad_value_set_in_python_is_one_sentence(edit, pattern):
  config = config_lib.base_config("panoptic_deeplab")
  edit(config)
  with pytest.raises(UserError) as e:
    config_lib.validate(config)
  assert re.fullmatch(pattern, str(e.value)), str(e.value)


def test_validation_loads_no_tensorflow_and_starts_no_backend():
  code = ("import sys; from segjax import config; c = config.load_config_file('configs/panoptic.py'); "
          "config.validate(c); config.validate(c); from jax._src import xla_bridge; "
          "assert not xla_bridge._backends, xla_bridge._backends; "
          "assert 'tensorflow' not in sys.modules; print('ok')")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.stdout.strip() == "ok", result.stderr


def test_a_config_is_checked_once_however_often_it_is_given(monkeypatch):
  checked = []
  monkeypatch.setattr(config_lib, "_check_model", checked.append)
  config = config_lib.base_config()
  config.optimizer.lr = 0.01234  # a config no other test has checked
  for _ in range(3):  # as main, then the trainer, are given it
    config_lib.validate(config)
  assert len(checked) == 1
  config.optimizer.lr = 0.04321  # another config: checked
  config_lib.validate(config)
  assert len(checked) == 2
  config.optimizer.lr = -1.0  # a config that fails is said every time
  for _ in range(2):
    with pytest.raises(UserError, match="config.optimizer.lr"):
      config_lib.validate(config)
