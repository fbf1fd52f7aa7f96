"""segjax.convert: converted ResNets and ConvNeXts compute what torchvision's and timm's computed
(against tests/fixtures/backbone_parity.npz, made by the script beside it), and every bad input is
one sentence. Without torch: the weights are drawn again from their seed."""
import importlib.util
import json
import os
import subprocess
import sys

from flax import traverse_util
import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

import parity
from segjax import convert, weights
from segjax.errors import UserError, cause
from segjax.weights import state_dict, torch_cnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = np.load(os.path.join(ROOT, "tests", "fixtures", parity.FIXTURE))
ENTRIES = [(s, a, f"{s}/{a}", 32, parity.SIZES) for s, a in parity.MODELS] + [
    ("torchvision", "resnet50", f"torchvision/resnet50/os{os_}", os_, [parity.DILATED_SIZE])
    for os_ in parity.DILATED] + [(*parity.SMALL, "/".join(parity.SMALL), 32, [parity.DILATED_SIZE])]


def _state(name):
  """The PyTorch-format weights the fixture was made with, drawn again without torch."""
  state = parity.state_dict(json.loads(str(FIXTURE[f"{name}/keys"])))
  assert parity.checksum(state) == pytest.approx(float(FIXTURE[f"{name}/checksum"]), rel=1e-12), \
      "NumPy draws other numbers from the seed than when the fixture was made: remake it"
  return state


def _checkpoint(tmp_path, name, edit=None):
  """The fixture's weights in a real torch-named .safetensors file, as timm and Hugging Face ship them."""
  state = _state(name)
  if edit:
    edit(state)
  path = str(tmp_path / "checkpoint.safetensors")
  save_file(state, path)
  return path


def _variables(path):
  flat, _ = weights.load(path)
  return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


@pytest.mark.slow
@pytest.mark.parametrize("source,arch,name,output_stride,sizes", ENTRIES, ids=[e[2] for e in ENTRIES])
def test_converted_model_computes_what_pytorch_computed(tmp_path, source, arch, name, output_stride, sizes):
  out = str(tmp_path / ("weights.npz" if "convnext" in arch else "weights.safetensors"))
  convert.convert_file(_checkpoint(tmp_path, name), out, arch, source)
  variables = _variables(out)
  errors = {}
  for size in sizes:
    ours = parity.segjax_outputs(variables, arch, parity.image(size), output_stride)
    for key in parity.outputs(arch):
      ref = FIXTURE[f"{name}/{size[0]}x{size[1]}/{key}"]
      errors[f"{size[0]}x{size[1]}/{key}"] = parity.relative_error(parity.sample(ours[key]), ref)
  print(name, json.dumps({k: f"{v:.1e}" for k, v in errors.items()}))
  assert max(errors.values()) < 1e-4, errors


def test_cli_writes_backbone_and_classifier_with_what_it_was_made_from(tmp_path):
  checkpoint, out = _checkpoint(tmp_path, "torchvision/resnet50"), str(tmp_path / "r50.safetensors")
  result = subprocess.run([sys.executable, "-m", "segjax.convert", "--arch=resnet50", "--source=torchvision",
                           f"--in={checkpoint}", f"--out={out}"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 0, result.stderr[-2000:]
  assert "torchvision's resnet50, backbone and classifier, 25,610,152 numbers" in result.stdout
  flat, meta = weights.load(out)
  assert meta == {"format": weights.FORMAT, "arch": "resnet50", "source": "torchvision",
                  "converted_from": "checkpoint.safetensors"}
  state = _state("torchvision/resnet50")  # transposed to Flax's layouts, every number kept
  np.testing.assert_array_equal(flat["params/backbone/stage2/block3/conv2/conv/kernel"],
                                state["layer2.2.conv2.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(flat["batch_stats/backbone/stem/bn/var"], state["bn1.running_var"])
  np.testing.assert_array_equal(flat["params/classifier/fc/kernel"], state["fc.weight"].T)


def test_half_precision_safetensors_convert_to_their_float32_values(tmp_path):
  state = _state("torchvision/resnet18")
  for dtype in (np.float16, ml_dtypes.bfloat16):
    path = tmp_path / f"{np.dtype(dtype).name}.safetensors"
    save_file({k: v.astype(dtype) for k, v in state.items()}, str(path))
    read = state_dict.read_state_dict(str(path))
    np.testing.assert_array_equal(read["layer1.0.conv1.weight"],
                                  state["layer1.0.conv1.weight"].astype(dtype).astype(np.float32))


def test_existing_output_is_never_overwritten(tmp_path):
  checkpoint, out = _checkpoint(tmp_path, "torchvision/resnet18"), tmp_path / "w.npz"
  out.write_bytes(b"keep me")
  with pytest.raises(UserError, match=r"--out '.*w.npz' exists; remove it or choose another file"):
    convert.convert_file(checkpoint, str(out), "resnet18", "torchvision")
  assert out.read_bytes() == b"keep me"


def test_a_backbone_only_checkpoint_converts_without_classifier():
  # timm's num_classes=0 keeps the head's LayerNorm; without its linear layer the head is left out.
  state = {k: v for k, v in _state("timm/convnext_tiny").items() if not k.startswith("head.fc")}
  assert list(torch_cnn.convert(state, "convnext_tiny", "timm")["params"]) == ["backbone"]
  state = {k: v for k, v in _state("torchvision/resnet50").items() if not k.startswith("fc.")}
  assert sorted(torch_cnn.convert(state, "resnet50", "torchvision")["params"]) == ["backbone"]
  state["fc.bias"] = np.zeros(1000, np.float32)  # half a classifier is a tensor left over
  with pytest.raises(UserError, match=r"it has 'fc.bias' that resnet50 does not"):
    torch_cnn.convert(state, "resnet50", "torchvision")


def _error(tmp_path, checkpoint, arch, source="torchvision"):
  """The sentence convert_file raises; it writes nothing."""
  out = tmp_path / "out.safetensors"
  with pytest.raises(UserError) as e:
    convert.convert_file(str(checkpoint), str(out), arch, source)
  assert not out.exists()
  return str(e.value)


def test_wrong_architecture_is_named_with_the_one_that_fits(tmp_path):
  checkpoint = _checkpoint(tmp_path, "torchvision/resnet101")
  assert _error(tmp_path, checkpoint, "resnet50") == (
      f"'{checkpoint}' is not torchvision's resnet50: it has 'layer3.6.bn1.bias' and 254 more tensors "
      "that resnet50 does not; it looks like torchvision's resnet101: pass --arch=resnet101 "
      "--source=torchvision.")
  checkpoint = _checkpoint(tmp_path, "timm/convnext_tiny")
  assert _error(tmp_path, checkpoint, "convnext_tiny") == (
      f"'{checkpoint}' is not torchvision's convnext_tiny: it lacks 'features.0.0.bias' and 177 more "
      "tensors and has 'head.fc.bias' and 181 more tensors that convnext_tiny does not; it looks like "
      "timm's convnext_tiny: pass --arch=convnext_tiny --source=timm.")


def test_mismatched_shape_is_named(tmp_path):
  def narrow(state):
    state["layer1.0.conv2.weight"] = state["layer1.0.conv2.weight"][:, :32]
  checkpoint = _checkpoint(tmp_path, "torchvision/resnet50", narrow)
  assert _error(tmp_path, checkpoint, "resnet50") == (
      f"'layer1.0.conv2.weight' in '{checkpoint}' has shape (64, 32, 3, 3) where torchvision's "
      "resnet50 has (64, 64, 3, 3); check --arch.")


def test_truncated_checkpoint_is_one_line_from_the_cli(tmp_path):
  checkpoint = _checkpoint(tmp_path, "torchvision/resnet50")
  with open(checkpoint, "r+b") as f:
    f.truncate(os.path.getsize(checkpoint) // 2)
  out = tmp_path / "out.safetensors"
  result = subprocess.run([sys.executable, "-m", "segjax.convert", "--arch=resnet50", f"--in={checkpoint}",
                           f"--out={out}"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  (line,) = result.stderr.strip().splitlines()
  assert line.startswith(f"segjax.convert: error: Cannot read '{checkpoint}' as a PyTorch checkpoint (")
  assert line.endswith("it is truncated or not a checkpoint: download it again.")
  assert not out.exists() and not list(tmp_path.glob("out.safetensors.tmp*"))  # nothing half-written


def test_unknown_architecture_missing_file_and_bad_output_are_named(tmp_path):
  checkpoint = _checkpoint(tmp_path, "torchvision/resnet50")
  assert _error(tmp_path, checkpoint, "resnet51").startswith(
      "Unknown --arch 'resnet51': choose one of resnet18, resnet34, resnet50")
  assert _error(tmp_path, tmp_path / "nope.pth", "resnet50") == (
      f"Checkpoint '{tmp_path}/nope.pth' does not exist.")
  with pytest.raises(UserError, match=r"--out 'w.pt' must end in .safetensors or .npz"):
    convert.convert_file(checkpoint, "w.pt", "resnet50", "torchvision")


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="PyTorch is installed here, so a .pth can be read")
def test_pth_without_torch_says_what_to_install(tmp_path):
  path = tmp_path / "resnet50.pth"
  path.write_bytes(b"PK\x03\x04")  # the start of the zip archive torch.save writes
  assert _error(tmp_path, path, "resnet50") == (
      f"Reading '{path}' needs PyTorch (pip install torch), or convert from the "
      ".safetensors file of the same weights, which does not.")


def test_damaged_weights_file_is_named(tmp_path):
  path = str(tmp_path / "w.npz")
  weights.save(path, {"params": {"backbone": {"x": np.ones(3, np.float32)}}}, {"arch": "resnet50"})
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) - 20)
  with pytest.raises(UserError, match=r"Cannot read weights file '.*w.npz' \(.*\); it is damaged or truncated"):
    weights.load(path)
  np.savez(path, x=np.ones(3))
  with pytest.raises(UserError, match=r"was not written by segjax"):
    weights.load(path)


_LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:4b2e\nsize 102530333\n"
_PAGE = b"\n  <!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>...</body></html>"


@pytest.mark.parametrize("name,content,sentence", [
    ("resnet50.pth", _LFS, "is a Git LFS pointer, not the checkpoint: fetch the file itself (git lfs pull in "
                           "its repository, or download it from the model's page)."),
    ("resnet50.safetensors", _LFS, "is a Git LFS pointer, not the checkpoint"),
    ("resnet50.pth", _PAGE, "is a web page, not a checkpoint: the download saved a page (a login, an error or "
                            "a redirect); download the file itself."),
    ("resnet50.safetensors", _PAGE, "is a web page, not a checkpoint"),
    ("resnet50.pth", b"weights: see the README\n", "is not a PyTorch checkpoint (neither the zip archive "
                                                     "torch.save writes nor a pickle): download it again."),
])
def test_what_a_failed_download_leaves_is_named_as_such(tmp_path, name, content, sentence):
  """Said before torch or safetensors read it: they would call it a pickle of Python objects, cut
  off, or a header they cannot parse."""
  path = tmp_path / name
  path.write_bytes(content)
  with pytest.raises(UserError) as e:
    state_dict.read_state_dict(str(path))
  assert str(e.value).startswith(f"'{path}' {sentence}"), str(e.value)


def test_a_librarys_terminal_codes_stay_out_of_sentences():
  error = RuntimeError("\x1b[1mWeights only load failed.\x1b[0m Re-running \x1b[31mtorch.load\x1b[0m\x07 ...")
  assert cause(error) == "RuntimeError: Weights only load failed. Re-running torch.load ..."


def test_the_same_input_converts_to_the_same_bytes_readable_as_an_npz(tmp_path):
  """Two processes (safetensors orders its metadata by a hash map seeded per process) write the same
  bytes, and the .safetensors file gets the .npz file's permissions."""
  code = ("import sys, numpy as np; from segjax import weights; "
          "variables = {'params': {'backbone': {'a': np.arange(6, dtype=np.float32).reshape(2, 3)}}}; "
          "meta = {'arch': 'resnet18', 'source': 'torchvision', 'converted_from': 'r.pth', 'note': 'x'}; "
          "[weights.save(p, variables, meta) for p in sys.argv[1:]]")
  paths = []
  for run in range(2):
    paths += [str(tmp_path / f"w{run}.safetensors"), str(tmp_path / f"w{run}.npz")]
    subprocess.run([sys.executable, "-c", code, *paths[-2:]], check=True, cwd=ROOT, timeout=120)
  assert open(paths[0], "rb").read() == open(paths[2], "rb").read()
  assert open(paths[1], "rb").read() == open(paths[3], "rb").read()
  assert os.stat(paths[0]).st_mode & 0o777 == os.stat(paths[1]).st_mode & 0o777
  flat, meta = weights.load(paths[0])
  assert meta["note"] == "x" and flat["params/backbone/a"].tolist() == [[0, 1, 2], [3, 4, 5]]
