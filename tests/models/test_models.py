"""Model shapes, output strides, dtypes, and that models and steps need no TensorFlow."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from segjax.heads import build_segmenter
from segjax.models import BACKBONES, convnext_tiny, resnet18, resnet50, SeedNet


def _shapes(module, x):
  out, _ = module.init_with_output(jax.random.key(0), x, train=False)
  return jax.tree.map(lambda a: a.shape, out)


def test_seed_backbone_is_stride_4_with_128_features():
  assert _shapes(SeedNet(), jnp.zeros((1, 256, 256, 3)))["out"] == (1, 64, 64, 128)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_resnet_output_stride_by_dilation(output_stride):
  shapes = jax.eval_shape(lambda x: resnet18(output_stride=output_stride).init_with_output(
      jax.random.key(0), x, train=False)[0], jnp.zeros((2, 64, 64, 3)))
  assert shapes["out"].shape == (2, 64 // output_stride, 64 // output_stride, 512)
  assert shapes["low"].shape == (2, 16, 16, 64)


def test_resnet50_width():
  shapes = jax.eval_shape(lambda x: resnet50(output_stride=16).init_with_output(
      jax.random.key(0), x, train=False)[0], jnp.zeros((1, 64, 64, 3)))
  assert shapes["out"].shape == (1, 4, 4, 2048)


@pytest.mark.parametrize("backbone,decoder,dtype", [("seed", "seed", "float32"),
                                                 ("resnet18", "deeplabv3plus", "bfloat16")])
def test_segmenter_gives_full_resolution_float32_logits(backbone, decoder, dtype):
  cfg = ml_collections.ConfigDict(dict(backbone=backbone, head="semantic", decoder=decoder, dtype=dtype,
                                       backbone_kwargs={}, decoder_kwargs={}))
  model = build_segmenter(cfg, num_classes=5)
  x = jnp.linspace(0, 1, 2 * 64 * 64 * 3).reshape(2, 64, 64, 3)
  variables = model.init(jax.random.key(0), x, train=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  out, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert out["semantic_logits"].shape == (2, 64, 64, 5)
  assert out["semantic_logits"].dtype == jnp.float32
  assert jnp.all(jnp.isfinite(out["semantic_logits"]))


def test_unknown_model_names_are_named():
  cfg = ml_collections.ConfigDict(dict(backbone="resnet7", head="semantic", decoder="seed", dtype="float32"))
  with pytest.raises(ValueError, match=r"Unknown backbone 'resnet7': choose one of .*resnet50"):
    build_segmenter(cfg, 4)


def test_models_and_train_step_import_without_tensorflow():
  code = ("import sys, segjax.models, segjax.engine.train; "
          "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')]; "
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True)


_BACKBONES = {"seed": {"widths": (4, 8, 8, 16, 16), "depths": (1, 1, 1), "features": 16},
              "resnet18": {"width": 8, "output_stride": 16},
              "resnet50": {"width": 4, "output_stride": 8},
              "convnext_tiny": {"depths": (1, 1, 1, 1), "dims": (8, 16, 16, 16)}}


@pytest.mark.parametrize("backbone", sorted(_BACKBONES))
def test_every_decoder_works_on_every_backbone(backbone):
  """An odd-sized image through each semantic decoder and the instance decoder, at full resolution."""
  for decoder, kwargs in (("seed", {"hidden": 8, "refine": 4}), ("deeplabv3plus", {"aspp_features": 8,
                        "decoder_features": 8, "low_features": 4})):
    cfg = ml_collections.ConfigDict(dict(backbone=backbone, backbone_kwargs=_BACKBONES[backbone],
                                         head="panoptic_deeplab", decoder=decoder, decoder_kwargs=kwargs,
                                         dtype="float32", instance_decoder="center_offset",
                                         instance_decoder_kwargs={"hidden": 8, "branch": 4}))
    model = build_segmenter(cfg, num_classes=3)
    out = jax.eval_shape(lambda m=model: m.init_with_output(
        jax.random.key(0), jnp.zeros((2, 50, 75, 3)), train=False)[0])
    assert out["semantic_logits"].shape == (2, 50, 75, 3), (backbone, decoder)
    assert out["center"].shape == (2, 50, 75) and out["offsets"].shape == (2, 50, 75, 2)


def test_convnext_stochastic_depth_acts_in_training_only():
  model = convnext_tiny(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), drop_path_rate=0.9)
  x = jnp.linspace(0, 1, 4 * 32 * 32 * 3).reshape(4, 32, 32, 3)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(0)  # layer scales well above their 1e-6 start; no init to compile
  variables = jax.tree.map(lambda s: rng.uniform(0.2, 0.8, s.shape).astype(np.float32), shapes)
  plain = convnext_tiny(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8))
  run = jax.jit(lambda m, train, seed=0: m.apply(variables, x, train=train, rngs={"dropout": jax.random.key(seed)})["out"],
                static_argnums=(0, 1))
  np.testing.assert_array_equal(run(model, False), run(plain, False))
  np.testing.assert_array_equal(run(model, True, 1), run(model, True, 1))
  assert not np.allclose(run(model, True, 1), run(model, True, 2))
  assert not np.allclose(run(model, True, 1), run(plain, True))


def test_kwargs_a_module_does_not_take_are_named():
  cfg = ml_collections.ConfigDict(dict(backbone="convnext_tiny", backbone_kwargs={"output_stride": 16},
                                       head="semantic", decoder="seed", decoder_kwargs={}, dtype="float32"))
  with pytest.raises(ValueError, match=r"^config.model.backbone_kwargs has 'output_stride', which "
                     r"convnext_tiny does not take; it takes depths, dims, drop_path_rate.$"):
    build_segmenter(cfg, 4)
  cfg.backbone, cfg.backbone_kwargs = "resnet50", {"output_stride": 12}  # checked at construction
  with pytest.raises(ValueError, match=r"ResNet output_stride must be 8, 16 or 32, not 12."):
    build_segmenter(cfg, 4)


@pytest.mark.parametrize("backbone", sorted(_BACKBONES) + ["pixel"])
def test_every_backbone_gives_strides_4_to_32(backbone):
  """stage1..stage4 at strides 4, 8, 16 and 32 (a ResNet at output stride 32), for multi-scale heads."""
  kwargs = {**_BACKBONES.get(backbone, {"width": 4, "depth": 1, "features": 8})}
  if backbone.startswith("resnet"):
    kwargs["output_stride"] = 32
  out = jax.eval_shape(lambda: BACKBONES[backbone](**kwargs).init_with_output(
      jax.random.key(0), jnp.zeros((1, 64, 96, 3)), train=False)[0])
  assert [out[f"stage{i}"].shape[1:3] for i in (1, 2, 3, 4)] == [(16, 24), (8, 12), (4, 6), (2, 3)], backbone


def test_vit_conv_stem_sees_across_patch_borders():
  """With a stem, tokens stay at stride `patch`, and a pixel on a patch's edge reaches its neighbour's
  token (a plain patch embedding keeps each patch to itself)."""
  from segjax.models.vit import ViT
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 32, 32, 3)), jnp.float32)
  edge = x.at[0, 15, 15].add(0.5)  # the last row and column of patch (0, 0)
  for stem, reaches in (((), False), ((4, 8), True)):
    model = ViT(patch=16, stem=stem, dim=8, depth=1, heads=2, mlp_hidden=16, grid=(2, 2))
    variables = model.init(jax.random.key(0), x, train=False)
    tokens = lambda images: model.apply(variables, images, method=model.embed)[:, 1:]
    assert tokens(x).shape == (1, 4, 8)
    changed = np.abs(np.asarray(tokens(edge) - tokens(x))).max(-1)[0] > 0
    assert list(changed) == [True, reaches, reaches, reaches], stem
  assert set(variables["params"]) >= {"stem1", "stem2", "patch_embed"}
  assert variables["params"]["patch_embed"]["kernel"].shape == (4, 4, 8, 8)
  with pytest.raises(ValueError, match="patch 16 is not a multiple of the stem's stride 32"):
    ViT(patch=16, stem=(4,) * 5, dim=8, depth=1, heads=2).init(jax.random.key(0), x, train=False)
