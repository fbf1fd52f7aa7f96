"""peers/compare.py at a tiny size on the CPU: both sides' JSON lines and their ratio. It needs a
Python with peers/requirements.txt (SEGJAX_PEER_PYTHON, or this one) and is skipped, with that
reason, where there is none: segjax's own environment never installs torch."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_PYTHON = os.environ.get("SEGJAX_PEER_PYTHON", sys.executable)
_HAS_TORCH = subprocess.run([PEER_PYTHON, "-c", "import torch, torchvision, transformers"],
                            capture_output=True, check=False).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _HAS_TORCH, reason=f"{PEER_PYTHON} has no torch, torchvision and transformers: "
                    "set SEGJAX_PEER_PYTHON to a Python with peers/requirements.txt")
@pytest.mark.parametrize("model", ["deeplabv3_resnet50", "mask2former_r50", "eomt_vit_s"])
def test_compare_prints_both_sides_and_their_ratio(model):
  env = dict(os.environ, SEGJAX_PEER_PYTHON=PEER_PYTHON, JAX_PLATFORMS="cpu",
             XLA_FLAGS=os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", ""))
  done = subprocess.run([sys.executable, "peers/compare.py", f"--model={model}", "--batch=2", "--size=64",
                         "--dtype=float32", "--steps=1", "--warmup=1"], cwd=ROOT, env=env, capture_output=True,
                        text=True, check=False, timeout=900)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  lines = [json.loads(line) for line in done.stdout.splitlines()]
  ours = {r["mode"]: r for r in lines if r.get("bench") == "segjax"}
  theirs = {r["mode"]: r for r in lines if r.get("bench") in ("torchvision", "transformers")}
  ratios = {r["mode"]: r for r in lines if "ratio" in r}
  assert set(ours) == set(theirs) == set(ratios) == {"train", "infer"}, lines
  for mode, peer in theirs.items():
    assert peer["model"] == model and (peer["batch"], peer["size"], peer["dtype"]) == (2, 64, "float32")
    assert set(ours[mode]) - {"jax", "planned_mem_gib"} <= set(peer), set(ours[mode]) - set(peer)
    assert peer["images_per_s"] > 0 and peer["flops_per_image"] > 0
    assert ratios[mode]["ratio"] == pytest.approx(ours[mode]["images_per_s"] / peer["images_per_s"], rel=1e-2)
