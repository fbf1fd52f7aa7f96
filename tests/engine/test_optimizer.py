"""Learning-rate schedules: warm-up and decay against their formulas, step by step."""
import math

import ml_collections
import pytest

from segjax.engine import optimizer
from segjax.errors import UserError


def _schedule(name, warmup=4, total=14, lr=0.1, power=0.9):
  return optimizer.make_schedule(ml_collections.ConfigDict(dict(
      schedule=name, lr=lr, warmup_steps=warmup, total_steps=total, poly_power=power)))


def _expected(name, step, warmup=4, total=14, lr=0.1, power=0.9):
  if step < warmup:
    return lr * step / warmup
  t = (step - warmup) / (total - warmup)
  return {"constant": lr, "cosine": lr * 0.5 * (1 + math.cos(math.pi * t)),
          "poly": lr * (1 - t) ** power}[name]


@pytest.mark.parametrize("name", ["constant", "cosine", "poly"])
def test_warmup_then_decay(name):
  schedule = _schedule(name)
  for step in range(15):
    assert float(schedule(step)) == pytest.approx(_expected(name, step), abs=1e-7), step
  assert float(schedule(2)) == pytest.approx(0.05)  # halfway up the warm-up
  if name != "constant":
    assert float(schedule(14)) == pytest.approx(0.0, abs=1e-7)  # fully decayed at the last step


def test_no_warmup_starts_at_the_peak():
  schedule = _schedule("cosine", warmup=0, total=10)
  assert float(schedule(0)) == pytest.approx(0.1)
  assert float(schedule(5)) == pytest.approx(0.05)


def test_unknown_schedule_is_named():
  with pytest.raises(UserError, match="Unknown schedule 'linear'"):
    _schedule("linear")


def _vit_params_and_config(**optimizer_keys):
  """A 3-block ViT with EoMT's head, parameters all 1, and its config with `optimizer_keys`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from segjax import heads  # pylint: disable=g-import-not-at-top
  from tiny_configs import tiny_config  # pylint: disable=g-import-not-at-top
  c = tiny_config("/nonexistent", "eomt", **{f"optimizer.{k}": v for k, v in optimizer_keys.items()})
  c.model.backbone = "vit_tiny_patch16"
  c.model.backbone_kwargs = ml_collections.ConfigDict(dict(patch=8, dim=8, depth=3, heads=2, mlp_hidden=8))
  c.model.decoder_kwargs.update(num_queries=4, blocks=1, upscale=1)
  model = heads.build_segmenter(c.model, c.dataset.num_classes)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))["params"]
  return jax.tree.map(lambda s: jnp.ones(s.shape), shapes), c


def _first_update(params, config, grads=1.0, step=0):
  import jax  # pylint: disable=g-import-not-at-top
  tx, _ = optimizer.make_optimizer(config)
  state = tx.init(params)
  for _ in range(step):  # steps with zero gradients move the schedule's count on
    _, state = tx.update(jax.tree.map(lambda p: p * 0, params), state, params)
  updates, _ = tx.update(jax.tree.map(lambda p: p * grads, params), state, params)
  return updates


def test_layer_decay_gives_each_block_its_rate_and_the_head_the_full_rate():
  params, c = _vit_params_and_config(layer_decay=0.5, lr=0.1, weight_decay=0.0, schedule="constant")
  u = _first_update(params, c)  # Adam's first step: the rate times the gradient's sign (eps aside)
  lr = lambda x: round(-float(x.reshape(-1)[0]), 5)
  assert lr(u["backbone"]["block3"]["mlp"]["fc1"]["kernel"]) == pytest.approx(0.1)
  assert lr(u["backbone"]["block2"]["attn"]["qkv"]["kernel"]) == pytest.approx(0.05)
  assert lr(u["backbone"]["block1"]["norm1"]["scale"]) == pytest.approx(0.025)
  assert lr(u["backbone"]["patch_embed"]["kernel"]) == pytest.approx(0.025)  # embeddings as block 1
  assert lr(u["backbone"]["pos_embed"]) == pytest.approx(0.025)
  assert lr(u["backbone"]["norm"]["scale"]) == pytest.approx(0.1)
  assert lr(u["head"]["queries"]) == pytest.approx(0.1)


def test_two_stage_warmup_rests_the_backbone_then_warms_it_up():
  params, c = _vit_params_and_config(name="sgd", momentum=0.0, lr=0.1, weight_decay=0.0, schedule="constant",
                                     warmup_steps=4, backbone_warmup_steps=8)
  lr = lambda u, part: -float(next(iter(__import__("jax").tree.leaves(u[part]))).reshape(-1)[0])
  for step, head, backbone in ((2, 0.05, 0.0), (4, 0.1, 0.0), (8, 0.1, 0.05), (12, 0.1, 0.1)):
    u = _first_update(params, c, step=step)
    assert lr(u, "head") == pytest.approx(head, rel=1e-5), step
    assert lr(u, "backbone") == pytest.approx(backbone, rel=1e-5, abs=1e-9), step
  c.optimizer.schedule, c.total_steps = "poly", 20  # each decays over what its warm-ups leave of the run
  u = _first_update(params, c, step=5)
  assert lr(u, "head") == pytest.approx(0.1 * (1 - 1 / 16) ** 0.9, rel=1e-5)
  assert lr(u, "backbone") == pytest.approx(0.1 * 1 / 8, rel=1e-5)


def test_no_weight_decay_on_norms_biases_layer_scales_embeddings_and_tokens():
  params, c = _vit_params_and_config(lr=0.1, weight_decay=0.5, schedule="constant", decay_norms_and_tokens=False)
  u = _first_update(params, c, grads=0.0)  # Adam's step is 0: what is left is the decay, -lr * wd * p
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  decayed = {"/".join(k) for k, v in traverse_util.flatten_dict(u).items() if abs(float(v.reshape(-1)[0])) > 0}
  assert "backbone/block1/attn/qkv/kernel" in decayed and "head/predictor/classes/kernel" in decayed
  for kept in ("backbone/pos_embed", "backbone/cls_token", "head/queries", "backbone/block1/ls1",
               "backbone/block1/norm1/scale", "backbone/block1/attn/qkv/bias", "backbone/norm/bias"):
    assert kept not in decayed
  assert float(u["backbone"]["block1"]["mlp"]["fc1"]["kernel"].reshape(-1)[0]) == pytest.approx(-0.05)


def test_biases_of_any_shape_are_not_decayed():
  import numpy as np  # pylint: disable=g-import-not-at-top
  mask = optimizer.decays({"attn": {"qv_bias": np.zeros((2, 8)), "qkv": {"kernel": np.zeros((8, 24))}}})
  assert mask == {"attn": {"qv_bias": False, "qkv": {"kernel": True}}}


def test_a_step_schedule_drops_the_backbone_at_the_same_steps_as_the_rest():
  opt = ml_collections.ConfigDict(dict(schedule="step", lr=0.1, warmup_steps=10, backbone_warmup_steps=20,
                                       total_steps=100, poly_power=0.9, step_at=(0.5, 0.8)))
  rest, backbone = optimizer.make_schedule(opt), optimizer.backbone_schedule(opt, optimizer.make_schedule(opt))
  for step, lr in ((49, 0.1), (50, 0.01), (79, 0.01), (80, 0.001)):
    assert float(rest(step)) == pytest.approx(lr), step
    assert float(backbone(step)) == pytest.approx(lr), step
  assert float(backbone(9)) == 0.0 and float(backbone(20)) == pytest.approx(0.05)
