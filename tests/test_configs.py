"""Every config in configs/ loads and validates; unknown keys are named."""
import glob
import os
import subprocess
import sys

import pytest

from segjax import config as config_lib
from segjax.data import dataset
from segjax.errors import UserError
from segjax.heads import build_segmenter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True))
CONFIGS += [p + ":tiny" for p in CONFIGS if "get_config(variant" in open(p).read()]  # recipes' tiny variants


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, os.path.join(ROOT, "configs")))
def test_config_loads_validates_and_builds(path):
  config = config_lib.load_config_file(path)
  config_lib.validate(config)
  # Benchmark configs set the class count (they read no data); recipes take it from the dataset.
  descriptor = dataset.get(config.dataset.name)
  build_segmenter(config.model, config.dataset.num_classes or len(descriptor.class_names or "abc"))
  assert config.batch_size % 8 == 0 and config.total_steps > 0


def test_unknown_key_in_a_config_file_is_named():
  config = config_lib.base_config()
  config.optimizer.lr_decay = 0.1
  with pytest.raises(UserError, match=r"Unknown config key 'config.optimizer.lr_decay'"):
    config_lib.validate(config)


def test_unknown_override_key_exits_with_one_sentence(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "segjax.main", "--config=configs/semantic.py",
       f"--workdir={tmp_path}", "--config.optimizer.lrr=0.1"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "segjax: error: Unknown config key in --config.optimizer.lrr=0.1: 'lrr'; did you mean 'lr'?" \
      in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.listdir(tmp_path)  # nothing was started
