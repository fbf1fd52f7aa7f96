"""segjax's ViTs and EoMT, converted from timm's and Hugging Face's names, compute what those
PyTorch models computed (tests/fixtures/vit_parity.npz, made by fixtures/make_vit_parity.py): every
block's tokens, the final norm, EoMT's class and mask logits with and without masked attention, at
input sizes the position embedding was not built for. Without torch: the weights are drawn again
from their seed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import parity
import vit_parity
from segjax.models import EoMTDecoder, Segmenter, VITS
from segjax.models import vit as vit_module
from segjax.weights import torch_vit

FIXTURE = vit_parity.fixture()
# fixture name -> (segjax arch, converter source)
CASES = {"timm/vit_base_patch16_224": ("vit_base_patch16", "timm"),
         "timm/vit_small_patch14_reg4_dinov2": ("vit_small_patch14_reg4_dinov2", "timm"),
         "hf/dinov3_vits16": ("vit_small_patch16_dinov3", "dinov3"),
         "hf/eomt_vits16@160": ("vit_small_patch14_reg4_dinov2", "eomt"),
         "hf/eomt_vits16@224": ("vit_small_patch14_reg4_dinov2", "eomt")}
TOLERANCE = 1e-4  # max |diff| / RMS of PyTorch's


def _model(name):
  """(Segmenter, variables) converted from the fixture's weights."""
  arch, source = CASES[name]
  variables, kwargs = torch_vit.convert(vit_parity.drawn(name, FIXTURE), arch, source)
  backbone = VITS[arch](**kwargs)
  decoders = ()
  if "head" in variables["params"]:
    spec = vit_parity.MODELS[name]
    decoders = (("head", EoMTDecoder(10, spec["queries"], blocks=spec["num_blocks"]), None),)
  return Segmenter(backbone, decoders), variables


def _run(model, variables, images, **inputs):
  """(outputs, {block{i}: tokens after block i}) of `model` in training mode (which EoMT needs to
  return the stride-4 masks; nothing here is random: no drop path, masking probabilities 0 or 1)."""
  if not model.decoders:
    outputs, state = model.apply(variables, images, method=lambda m, x: m.backbone(x, False),
                                 capture_intermediates=lambda m, _: isinstance(m, vit_module.Block))
  else:
    outputs, state = model.apply(variables, images, True, **inputs, rngs={"dropout": jax.random.key(0)},
                                 capture_intermediates=lambda m, _: isinstance(m, vit_module.Block))
  blocks = state["intermediates"]["backbone"]
  return outputs, {name: np.asarray(v["__call__"][0]) for name, v in blocks.items()}


def _check(ours, name, size, key):
  ref = FIXTURE[f"{name}/{size[0]}x{size[1]}/{key}"]
  got = parity.sample(np.asarray(ours))
  assert got.shape == ref.shape, (key, got.shape, ref.shape)
  error = parity.relative_error(got, ref)
  assert error < TOLERANCE, f"{name} {size} {key}: max|diff| / RMS = {error:.2e}"


@pytest.mark.parametrize("name", [n for n in CASES if "eomt" not in n])
def test_every_block_of_a_converted_vit_equals_pytorch(name):
  model, variables = _model(name)
  count = sum(x.size for x in jax.tree.leaves(variables))
  extra = 384 if "dinov3" in name else 0  # Hugging Face counts DINOv3's mask token, which is dropped
  assert count + extra == int(FIXTURE[f"{name}/params"])
  for size in vit_parity.MODELS[name]["sizes"]:
    outputs, blocks = _run(model, variables, parity.image(size))
    for i in range(1, vit_parity.DEPTH + 1):
      _check(blocks[f"block{i}"], name, size, f"block{i}")
    _check(outputs["tokens"], name, size, "out")


@pytest.mark.parametrize("name", [n for n in CASES if "eomt" in n])
def test_converted_eomt_equals_hugging_face_with_and_without_masks(name):
  model, variables = _model(name)
  count = sum(x.size for x in jax.tree.leaves(variables))
  assert count == int(FIXTURE[f"{name}/params"])
  size = vit_parity.MODELS[name]["sizes"][0]
  images = parity.image(size)
  blocks = model.decoders[0][1].blocks
  for suffix, p in (("_masked", 1.0), ("", 0.0)):
    outputs, tokens = _run(model, variables, images, mask_probs=jnp.full((blocks,), p))
    _check(outputs["class_logits"][:, -1], name, size, "class_logits" + suffix)
    _check(outputs["mask_logits"][:, -1], name, size, "mask_logits" + suffix)
  for i in range(1, vit_parity.DEPTH + 1):  # the unmasked run's, as the fixture's
    _check(tokens[f"block{i}"], name, size, f"block{i}")
  # Inference (train=False) runs without masks: the unmasked prediction, masks at input size.
  inferred = model.apply(variables, images)
  _check(inferred["class_logits"], name, size, "class_logits")
  assert inferred["mask_logits"].shape == (1, *size, vit_parity.MODELS[name]["queries"])
