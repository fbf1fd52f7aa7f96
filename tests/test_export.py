"""segjax.export: the exported function, loaded where segjax is never imported, answers exactly as
the in-process inference function does, at any batch size."""
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from segjax import export
from segjax.engine import trained_run
from segjax.errors import UserError



@pytest.fixture(scope="module")
def run(panoptic_run, tmp_path_factory):
  """The tiny run with flip inference in its config.json: export follows the run's protocol."""
  workdir = str(tmp_path_factory.mktemp("flipped") / "run")
  shutil.copytree(panoptic_run, workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  config["eval"]["flip"] = True
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(config, f)
  return workdir

# Run in a fresh interpreter outside the repository: it may import jax or TensorFlow, never segjax.
_CALL_STABLEHLO = """
import sys, jax, numpy as np
exported = jax.export.deserialize(bytearray(open(sys.argv[1] + "/inference.jax", "rb").read()))
images = np.load(sys.argv[2])["images"]
outputs = {f"{k}_{n}": np.asarray(v) for n in (2, 3) for k, v in exported.call(images[:n]).items()}
assert not any(m.startswith("segjax") for m in sys.modules), "segjax was imported"
np.savez(sys.argv[3], **outputs)
"""
_CALL_SAVEDMODEL = """
import sys, numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1] + "/saved_model").signatures["serving_default"]
images = np.load(sys.argv[2])["images"]
outputs = {f"{k}_{n}": v.numpy() for n in (2, 3) for k, v in serve(images=tf.constant(images[:n])).items()}
assert not any(m.startswith("segjax") for m in sys.modules), "segjax was imported"
np.savez(sys.argv[3], **outputs)
"""


def _call(script, out, images, tmp_path):
  np.savez(tmp_path / "images.npz", images=images)
  # XLA_FLAGS stays: XLA's CPU code for 8 emulated devices may round a score's last bit otherwise.
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  subprocess.run([sys.executable, "-c", script, out, str(tmp_path / "images.npz"), str(tmp_path / "got.npz")],
                 cwd=tmp_path, env=env, check=True, timeout=600)
  return np.load(tmp_path / "got.npz")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["stablehlo", "savedmodel"])
def test_the_exported_function_answers_as_the_inference_function(run, tmp_path, fmt):
  out = str(tmp_path / "export")
  export.export(run, out, fmt)
  signature = json.load(open(os.path.join(out, "signature.json")))
  assert signature["input"]["shape"] == ["batch", 64, 64, 3] and signature["protocol"]["flip"]
  images = np.random.default_rng(0).uniform(size=(3, 64, 64, 3)).astype(np.float32)
  got = _call(_CALL_STABLEHLO if fmt == "stablehlo" else _CALL_SAVEDMODEL, out, images, tmp_path)
  config, model, variables, step = trained_run.load(run)
  assert signature["step"] == step
  serve = jax.jit(export.flat_inference_fn(model, config, variables))
  for n in (2, 3):
    want = jax.device_get(serve(images[:n]))
    assert set(want) == {"semantic", "panoptic", "instance_map", "valid", "classes", "scores"}
    assert want["valid"].any()
    for key, value in want.items():
      if fmt == "savedmodel" and value.dtype.kind == "f":  # TensorFlow's own XLA: a last bit may differ
        np.testing.assert_allclose(got[f"{key}_{n}"], value, rtol=1e-6, atol=1e-7, err_msg=f"{key}, batch {n}")
      else:  # bit for bit
        np.testing.assert_array_equal(got[f"{key}_{n}"], value, err_msg=f"{key}, batch {n}")


@pytest.mark.slow
def test_export_never_overwrites_and_a_failed_one_leaves_nothing(run, tmp_path, monkeypatch):
  (tmp_path / "taken").mkdir()
  with pytest.raises(UserError, match=r"already exists; pass a new --out"):
    export.export(run, str(tmp_path / "taken"))

  def fail(*args):
    raise UserError("the disk is full")

  monkeypatch.setattr(export, "_saved_model", fail)
  with pytest.raises(UserError, match="the disk is full"):
    export.export(run, str(tmp_path / "new") + "/", "savedmodel")
  assert sorted(os.listdir(tmp_path)) == ["taken"]  # no OUT, no half-written directory beside it
  monkeypatch.undo()
  export.export(run, str(tmp_path / "new") + "/")  # and the next try just works
  assert sorted(os.listdir(tmp_path / "new")) == ["inference.jax", "signature.json"]
