"""segjax.convert for ViTs: each source's names, the file's recorded statistics and shapes, and a
run that starts from it built to match, or stopped with a sentence."""
import json

import ml_collections
import numpy as np
import pytest
from safetensors.numpy import save_file

from segjax import convert, weights
from segjax.errors import UserError
from segjax.weights import pretrained, torch_vit
import vit_parity

_state = lambda name, recorded=vit_parity.fixture(): vit_parity.drawn(name, recorded)


def test_dinov2s_own_names_convert_to_what_timm_names_convert_to():
  """DINOv2's checkpoints keep the class token's position entry in pos_embed and name the registers
  register_tokens; timm folds that entry into the class token (as segjax does)."""
  timm = _state("timm/vit_small_patch14_reg4_dinov2")
  first = np.random.default_rng(0).uniform(-1, 1, (1, 1, 384)).astype(np.float32)
  own = {("register_tokens" if k == "reg_token" else k): v for k, v in timm.items()}
  own["cls_token"] = timm["cls_token"] - first
  own["pos_embed"] = np.concatenate([first, timm["pos_embed"]], axis=1)
  own["mask_token"] = np.zeros((1, 384), np.float32)  # a pretraining device: dropped
  ours, _ = torch_vit.convert(own, "vit_small_patch14_reg4_dinov2", "dinov2")
  theirs, _ = torch_vit.convert(timm, "vit_small_patch14_reg4_dinov2", "timm")
  flat = lambda v: dict(weights.traverse_util.flatten_dict(v))
  a, b = flat(ours), flat(theirs)
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=str(key))


def test_a_converted_eomt_records_what_its_model_must_be_built_with(tmp_path):
  path = str(tmp_path / "eomt.safetensors")
  save_file(_state("hf/eomt_vits16@160"), path)
  out = str(tmp_path / "w.safetensors")
  line = convert.convert_file(path, out, "vit_small_patch14_reg4_dinov2", "eomt")
  assert "backbone and head" in line
  meta = weights.metadata(out)
  assert json.loads(meta["backbone_kwargs"]) == {"patch": 16, "grid": [10, 10]}
  assert json.loads(meta["mean"]) == pytest.approx([0.485, 0.456, 0.406])
  model = ml_collections.ConfigDict(dict(
      backbone="vit_small_patch14_reg4_dinov2", backbone_kwargs=dict(patch=16, grid=(10, 10)),
      init_from=dict(path=out, parts=("backbone", "head"))))
  assert pretrained._problem(model) is None  # pylint: disable=protected-access
  model.backbone_kwargs = ml_collections.ConfigDict(dict(patch=16, mean=(0.5, 0.5, 0.5)))
  assert pretrained._problem(model) == (  # pylint: disable=protected-access
      f"config.model.init_from.path '{out}' holds weights of a backbone with grid=(10, 10), "
      "mean=(0.485, 0.456, 0.406), which config.model.backbone_kwargs does not give (a model standardising "
      "with other statistics, or of another patch size or position grid, would compute something else): "
      "set them in config.model.backbone_kwargs.")


@pytest.mark.parametrize("arch,source,problem", [
    ("vit_base_patch16", "timm", "it has 'backbone/block1/ls1' and 24 more tensors that vit_base_patch16 does not"),
    ("vit_small_patch14_reg4_dinov2", "dinov3", "it lacks 'backbone/block1/attn/proj/bias' and 172 more tensors and "
     "has 'blocks.0.attn.proj.bias' and 172 more tensors that vit_small_patch14_reg4_dinov2 does not"),
    ("vit_small_patch14_dinov2", "timm", "it has 'backbone/registers' that vit_small_patch14_dinov2 does not"),
])
def test_a_checkpoint_of_another_vit_is_one_sentence_naming_what_it_looks_like(arch, source, problem):
  with pytest.raises(UserError) as e:
    torch_vit.convert(_state("timm/vit_small_patch14_reg4_dinov2"), arch, source)
  assert str(e.value) == (f"the checkpoint is not {source}'s {arch}: {problem}; it looks like timm's "
                          "vit_small_patch14_reg4_dinov2: pass --arch=vit_small_patch14_reg4_dinov2 --source=timm.")


def test_a_patch_embedding_resized_14_to_16_is_timms_flexivit_resize():
  kernel = vit_parity.flexivit_kernel()  # (out, in, 14, 14), PyTorch's layout
  ours = torch_vit.resample_patch_embed(kernel.transpose(2, 3, 1, 0), 16).transpose(3, 2, 0, 1)
  ref = vit_parity.fixture()["flexivit/16"]
  assert np.abs(ours - ref).max() / np.sqrt(np.mean(ref**2)) < 1e-4
  # What it is for: a 16-pixel patch resized from 14 pixels meets the new kernel as the 14-pixel
  # patch met the old one (up to the resize's information loss, none here: it is upsampling).
  patch = np.random.default_rng(1).random((14, 14, 3), np.float32)
  big = np.asarray(torch_vit.jax.image.resize(patch, (16, 16, 3), "bicubic", antialias=True))
  old = np.einsum("hwc,hwco->o", patch, kernel.transpose(2, 3, 1, 0))
  new = np.einsum("hwc,hwco->o", big, ours.transpose(2, 3, 1, 0))
  np.testing.assert_allclose(new, old, rtol=1e-3, atol=1e-3)


def test_the_converter_resamples_the_patch_and_resizes_the_grid_and_records_both(tmp_path):
  path = str(tmp_path / "dinov2.safetensors")
  save_file(_state("timm/vit_small_patch14_reg4_dinov2"), path)
  out = str(tmp_path / "w.npz")
  convert.convert_file(path, out, "vit_small_patch14_reg4_dinov2", "timm", patch=16, grid=(40, 40))
  assert json.loads(weights.metadata(out)["backbone_kwargs"]) == {"patch": 16, "grid": [40, 40]}
  flat, _ = weights.load(out)
  assert flat["params/backbone/patch_embed/kernel"].shape == (16, 16, 3, 384)
  assert flat["params/backbone/pos_embed"].shape == (1, 1600, 384)
  with pytest.raises(UserError, match=r"--patch and --grid resize a ViT's embeddings; resnet50 is not a ViT\."):
    convert.convert_file(path, str(tmp_path / "x.npz"), "resnet50", "timm", patch=16)


def test_a_class_token_entry_in_the_position_embedding_is_folded_whatever_the_source():
  """timm's DINOv2 without registers keeps the class token's entry first, as DINOv2's own do."""
  reg = _state("timm/vit_small_patch14_reg4_dinov2")
  first = np.full((1, 1, 384), 0.25, np.float32)
  plain = {k: v for k, v in reg.items() if k != "reg_token"}
  plain["pos_embed"] = np.concatenate([first, reg["pos_embed"]], axis=1)
  variables, kwargs = torch_vit.convert(plain, "vit_small_patch14_dinov2", "timm")
  assert kwargs == {}
  backbone = variables["params"]["backbone"]
  np.testing.assert_allclose(backbone["cls_token"], reg["cls_token"] + first)
  np.testing.assert_array_equal(backbone["pos_embed"], reg["pos_embed"])


def test_a_grid_of_another_shape_is_recorded_and_rotary_models_refuse_one(tmp_path):
  path = str(tmp_path / "dinov2.safetensors")
  save_file(_state("timm/vit_small_patch14_reg4_dinov2"), path)
  out = str(tmp_path / "w.npz")
  convert.convert_file(path, out, "vit_small_patch14_reg4_dinov2", "timm", grid=(20, 30))
  assert json.loads(weights.metadata(out)["backbone_kwargs"]) == {"grid": [20, 30]}
  with pytest.raises(UserError, match=r"--grid resizes a learned position embedding; vit_small_patch16_dinov3 "):
    torch_vit.convert(_state("hf/dinov3_vits16"), "vit_small_patch16_dinov3", "dinov3", grid=(20, 20))
