"""EoMT's head: mask annealing by the step, masks that change what the queries see in training and
are ignored in inference, and a train step that anneals as the schedule says."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from segjax import config as config_lib
from segjax import heads
from segjax.engine import optimizer, train
from segjax.errors import UserError
from tiny_configs import tiny_config


def _config(data_dir="/nonexistent", **overrides):
  c = tiny_config(data_dir, "eomt", **overrides)
  c.model.backbone = "vit_tiny_patch16"
  c.model.backbone_kwargs = ml_collections.ConfigDict(dict(patch=8, dim=16, depth=3, heads=2, mlp_hidden=32,
                                                           grid=(6, 6)))
  c.model.decoder_kwargs.update(num_queries=8, blocks=2, upscale=1)
  c.loss.num_points, c.loss.max_segments = 64, 8
  return c


def test_each_block_anneals_on_eomts_schedule():
  c = _config(total_steps=600)  # two masked blocks: fourths 1-2 and 2-3 of training
  head = heads.get(c)
  assert head.windows(c) == ([150, 300], [300, 450])
  poly = lambda progress: (1 - progress) ** 0.9
  expected = {0: [1, 1], 150: [1, 1], 225: [poly(0.5), 1], 300: [0, 1], 330: [0, poly(0.2)], 449: [0, poly(149 / 150)],
              450: [0, 0], 600: [0, 0]}
  for step, probs in expected.items():
    np.testing.assert_allclose(head.train_inputs(c, jnp.int32(step))["mask_probs"], probs, rtol=1e-6, atol=1e-7)
  c.mask_annealing.starts, c.mask_annealing.ends, c.mask_annealing.power = (0.0, 0.5), (0.5, 1.0), 1.0
  np.testing.assert_allclose(head.train_inputs(c, jnp.int32(150))["mask_probs"], [0.5, 1.0])


def test_annealing_settings_that_cannot_work_are_refused():
  c = _config()
  c.mask_annealing.starts = (0.1, 0.2, 0.3)
  with pytest.raises(UserError, match=r"starts has 3 entries for 2 masked blocks"):
    config_lib.validate(c)
  with pytest.raises(UserError, match=r"ends \(300, 525\) before it starts \(375, 450\)"):
    config_lib.validate(_config(total_steps=750, **{"mask_annealing.starts": (0.5, 0.6),
                                                    "mask_annealing.ends": (0.4, 0.7)}))
  c = _config()
  c.model.backbone = "seed"
  c.model.backbone_kwargs = ml_collections.ConfigDict()
  with pytest.raises(UserError, match=r"EoMT runs its queries through a ViT's last blocks"):
    config_lib.validate(c)


@pytest.fixture(scope="module")
def model_and_variables():
  c = _config()
  model = heads.build_segmenter(c.model, c.dataset.num_classes)
  images = jax.random.uniform(jax.random.key(0), (2, 48, 48, 3))
  return c, model, model.init(jax.random.key(1), images), images


def test_masks_change_training_and_inference_ignores_them(model_and_variables):
  c, model, variables, images = model_and_variables
  run = lambda probs: model.apply(variables, images, True, mask_probs=jnp.asarray(probs, jnp.float32),
                                  rngs={"dropout": jax.random.key(2)})
  masked, unmasked = run([1.0, 1.0]), run([0.0, 0.0])
  assert masked["class_logits"].shape == (2, 3, 8, c.dataset.num_classes + 1)  # before each masked block, and last
  assert masked["mask_logits"].shape == (2, 3, 12, 12, 8)  # stride 4
  # The first prediction is before any mask; the later ones see masked attention.
  np.testing.assert_array_equal(masked["class_logits"][:, 0], unmasked["class_logits"][:, 0])
  assert np.abs(masked["class_logits"][:, -1] - unmasked["class_logits"][:, -1]).max() > 1e-3
  inferred = model.apply(variables, images)
  np.testing.assert_allclose(inferred["class_logits"], unmasked["class_logits"][:, -1], rtol=1e-5, atol=1e-5)
  assert inferred["mask_logits"].shape == (2, 48, 48, 8)


def test_the_train_step_anneals_as_the_schedule_says(model_and_variables):
  """At the last step no mask is left: the step's loss is the unmasked model's; at the first, every mask is on."""
  c, model, _, _ = model_and_variables
  tx, schedule = optimizer.make_optimizer(c)
  state = train.create_train_state(model, tx, jax.random.key(0), (48, 48))
  head = heads.get(c)
  rng = np.random.default_rng(0)
  batch = {"image": rng.random((2, 48, 48, 3), np.float32), "semantic": rng.integers(0, 4, (2, 48, 48)).astype(np.int32),
           **jax.tree.map(np.asarray, head.synthetic_targets(c, jax.random.key(3), 2, 48))}
  step = jax.jit(lambda s, b: train.train_step(s, b, model=model, tx=tx, schedule=schedule, head=head, config=c))
  for at, probs in ((0, [1.0, 1.0]), (c.total_steps, [0.0, 0.0])):
    s = state.replace(step=jnp.int32(at))
    _, metrics = step(s, batch)
    key = jax.random.fold_in(jax.random.key(c.seed), at)
    outputs = model.apply({"params": s.params}, batch["image"], True, mask_probs=jnp.asarray(probs),
                          rngs={"dropout": key})
    loss, _ = head.loss(outputs, batch, c, jax.random.fold_in(key, 1))
    assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-5)


def test_of_two_heads_with_the_same_keys_the_config_holds_the_one_it_names():
  from segjax import head_keys  # pylint: disable=g-import-not-at-top
  c = config_lib.base_config("eomt")
  assert head_keys.holder(c) == "eomt"
  c.model.head = "eomt_semantic"
  assert head_keys.holder(c) == "eomt_semantic"
