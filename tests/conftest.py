"""Eight emulated CPU devices for every test, set before JAX starts; a tiny dataset shared by all."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ["JAX_PLATFORMS"] = "cpu"  # the suite is CPU-only, also on a machine with a GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# XLA compiles the partitionable threefry of every Flax init ~4x slower on the CPU (a narrow
# ResNet-18: 13.6 s against 3.4 s). The tests compare runs with runs, never a figure with a stream.
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
# One XLA compilation cache per test session, which the subprocess runs inherit: a program that many
# tests and reruns compile (the tiny model's steps) compiles once. Removed when the session ends.
import atexit  # pylint: disable=g-import-not-at-top,wrong-import-position
import shutil  # pylint: disable=g-import-not-at-top,wrong-import-position
import tempfile  # pylint: disable=g-import-not-at-top,wrong-import-position
os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="segjax_tests_xla_cache_")
atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"

from segjax.engine import host_memory  # pylint: disable=g-import-not-at-top,wrong-import-position
host_memory.reuse_freed_memory()  # as segjax's programs do, before the backend starts

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

from tiny_configs import tiny_config, tiny_panoptic_config  # pylint: disable=g-import-not-at-top,wrong-import-position,unused-import


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """tfds data_dir holding synthetic_scenes/tiny, prepared once per test session."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import segjax.data  # pylint: disable=g-import-not-at-top,unused-import
  path = str(tmp_path_factory.mktemp("tfds"))
  tfds.builder("synthetic_scenes/tiny", data_dir=path).download_and_prepare()
  return path


@pytest.fixture(scope="session")
def panoptic_run(data_dir, tmp_path_factory):
  """The workdir of a tiny panoptic run trained for two steps, every centre kept (threshold 0), so
  its instances are many; for the tests that read a trained run."""
  from segjax.engine import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp("panoptic_run"))
  config = tiny_panoptic_config(data_dir, total_steps=2, eval_every=2, **{"postprocess.center_threshold": 0.0})
  train.train_and_evaluate(config, workdir)
  return workdir


_VERSIONS = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-cpu", "tensorflow",
             "tensorflow-datasets", "numpy", "pycocotools", "pytest", "pytest-xdist", "cityscapesscripts")


def pytest_terminal_summary(terminalreporter):
  """Names the releases the suite ran with, next to its count: what a failure on a fresh install
  needs first."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  import platform  # pylint: disable=g-import-not-at-top
  found = []
  for name in _VERSIONS:
    try:
      found.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
      pass
  terminalreporter.write_line(f"Ran with Python {platform.python_version()}, " + ", ".join(found))
