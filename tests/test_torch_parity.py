"""Where PyTorch is installed: segjax's converted models against torchvision's and timm's own, every
output whole, from `.pth` and `.safetensors` checkpoints (CI has no torch: skipped there, and
test_convert.py checks the same against the recorded fixture).

  /tmp/tenv/bin/python -m pytest -q tests/test_torch_parity.py   # see tests/fixtures/make_backbone_parity.py
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch (not a segjax dependency): "
                            "see tests/fixtures/make_backbone_parity.py for the environment")
torchvision = pytest.importorskip("torchvision", reason="needs torchvision")

import parity  # pylint: disable=g-import-not-at-top,wrong-import-position
from segjax import convert, weights  # pylint: disable=g-import-not-at-top,wrong-import-position
from segjax.errors import UserError  # pylint: disable=g-import-not-at-top,wrong-import-position
from test_convert import _variables  # pylint: disable=g-import-not-at-top,wrong-import-position

_HAS_TIMM = __import__("importlib").util.find_spec("timm") is not None
CASES = ([(s, a, 32, parity.SIZES) for s, a in parity.MODELS] +
         [("torchvision", "resnet50", os_, [parity.DILATED_SIZE]) for os_ in parity.DILATED] +
         [("timm", "resnet50", 32, [parity.DILATED_SIZE])] +
         [("torchvision", a, 32, [(97, 130)]) for a in ("resnet18", "resnet34", "resnet152",
                                                       "convnext_small", "convnext_large")])


def _weighted(source, arch, output_stride=32):
  model = parity.torch_model(source, arch, output_stride)
  state = parity.state_dict([(k, v.shape) for k, v in model.state_dict().items()])
  model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
  return model, state


@pytest.mark.slow
@pytest.mark.parametrize("source,arch,output_stride,sizes", CASES,
                         ids=[f"{c[0]}/{c[1]}/os{c[2]}" for c in CASES])
def test_converted_model_equals_pytorch_model(tmp_path, source, arch, output_stride, sizes):
  if source == "timm" and not _HAS_TIMM:
    pytest.skip("needs timm")
  torch.set_num_threads(2)
  model, _ = _weighted(source, arch, output_stride)
  pth = str(tmp_path / "model.pth")
  torch.save(model.state_dict(), pth)  # with num_batches_tracked, as torchvision ships them
  out = str(tmp_path / "weights.safetensors")
  convert.convert_file(pth, out, arch, source)
  variables = _variables(out)
  for size in sizes:
    images = parity.image(size)
    ref = parity.torch_outputs(model, source, arch, images)
    ours = parity.segjax_outputs(variables, arch, images, output_stride)
    for key in parity.outputs(arch):
      assert ours[key].shape == ref[key].shape, (size, key)
      assert parity.relative_error(ours[key], ref[key]) < 1e-4, (size, key)


def test_pth_wrappers_and_ddp_prefixes_are_unwrapped(tmp_path):
  model, _ = _weighted("torchvision", "resnet18")
  pth = tmp_path / "wrapped.pth"
  torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 90}, pth)
  convert.convert_file(str(pth), str(tmp_path / "w.npz"), "resnet18", "torchvision")
  flat, meta = weights.load(str(tmp_path / "w.npz"))
  np.testing.assert_array_equal(flat["params/classifier/fc/bias"], model.fc.bias.detach().numpy())
  assert meta["converted_from"] == "wrapped.pth"


def test_truncated_pth_is_named(tmp_path):
  model, _ = _weighted("torchvision", "resnet18")
  pth = tmp_path / "cut.pth"
  torch.save(model.state_dict(), pth)
  pth.write_bytes(pth.read_bytes()[: pth.stat().st_size // 2])
  with pytest.raises(UserError, match=r"Cannot read '.*cut.pth' as a PyTorch checkpoint \(.*\); it is "
                     r"truncated or not a checkpoint: download it again."):
    convert.convert_file(str(pth), str(tmp_path / "w.npz"), "resnet18", "torchvision")


def test_pth_with_python_objects_says_to_save_the_state_dict_alone(tmp_path):
  model, _ = _weighted("torchvision", "resnet18")
  pth = tmp_path / "train.pth"
  torch.save({"model": model.state_dict(), "args": __import__("argparse").Namespace(lr=0.1)}, pth)
  with pytest.raises(UserError, match=r"holds Python objects besides tensors \(.*\); load it in PyTorch "
                     r"and torch.save its state dict \(e.g. checkpoint\['model'\]\) alone."):
    convert.convert_file(str(pth), str(tmp_path / "w.npz"), "resnet18", "torchvision")
