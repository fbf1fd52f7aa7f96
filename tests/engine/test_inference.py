"""segjax.engine.inference: sliding windows, scales and flips give what one whole-image pass gives wherever
they should, on models whose answer is known."""
import filecmp
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import oracle
from segjax.config import base_config
from segjax.engine import inference
from segjax.errors import UserError
from segjax import heads
from segjax.heads import panoptic_deeplab


def _conv_net(seed, mirror=False, channels=4):
  """apply(images) of two 3x3 zero-padded convolutions (a receptive field of radius 2); with
  `mirror`, kernels symmetric left-right, so the net commutes with a horizontal flip."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  kernels = [jax.random.normal(k1, (3, 3, 3, 8)), jax.random.normal(k2, (3, 3, 8, channels))]
  if mirror:
    kernels = [(k + k[:, ::-1]) / 2 for k in kernels]

  def conv(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)

  def apply(images):
    return {"semantic_logits": conv(jax.nn.relu(conv(images, kernels[0])), kernels[1])}

  return apply


def _protocol(**kw):
  p = dict(mode="whole", window=(0, 0), stride=(0, 0), margin=(0, 0), scales=(1.0,), flip=False)
  return inference.Protocol(**{**p, **kw})


IMAGES = jax.random.uniform(jax.random.key(0), (2, 40, 56, 3))
KINDS = heads.HEADS["panoptic_deeplab"].outputs  # semantic_logits: probabilities; offsets: displacement


def test_a_window_the_size_of_the_image_is_the_whole_image_pass():
  apply = jax.jit(_conv_net(1))
  whole = inference.dense_outputs(apply, IMAGES, _protocol(), KINDS)
  slide = inference.dense_outputs(apply, IMAGES, _protocol(mode="slide", window=(40, 56), stride=(20, 28)), KINDS)
  np.testing.assert_array_equal(slide["semantic_logits"], whole["semantic_logits"])


def test_windows_with_a_margin_past_the_receptive_field_equal_the_whole_image():
  apply = _conv_net(2)
  whole = inference.dense_outputs(apply, IMAGES, _protocol(), KINDS)["semantic_logits"]
  # Windows 16x24 every 10x14 (the last ones flush with the end): overlaps of 6 and 10 pixels.
  slide = functools.partial(_protocol, mode="slide", window=(16, 24), stride=(10, 14))
  trimmed = inference.dense_outputs(apply, IMAGES, slide(margin=(2, 2)), KINDS)["semantic_logits"]
  np.testing.assert_allclose(trimmed, whole, rtol=1e-5, atol=1e-5)
  # mmsegmentation's plain mean lets each window's zero-padded border into the average.
  mean = inference.dense_outputs(apply, IMAGES, slide(), KINDS)["semantic_logits"]
  assert np.abs(mean - whole).max() > 1e-2
  # A stride that leaves no overlap: no margin is possible, and the borders differ.
  tiled = inference.dense_outputs(apply, IMAGES, slide(stride=(16, 24)), KINDS)["semantic_logits"]
  assert np.isfinite(tiled).all() and np.abs(tiled - whole).max() > 1e-2


def test_an_image_smaller_than_the_window_is_padded_to_it():
  apply = _conv_net(3)
  small = IMAGES[:, :12, :20]
  out = inference.dense_outputs(apply, small, _protocol(mode="slide", window=(16, 24), stride=(8, 8)), KINDS)
  padded = jnp.pad(small, ((0, 0), (0, 4), (0, 4), (0, 0)))
  np.testing.assert_allclose(out["semantic_logits"], apply(padded)["semantic_logits"][:, :12, :20],
                             rtol=1e-6, atol=1e-6)


def _probabilities(apply, p):
  return jax.nn.softmax(inference.dense_outputs(apply, IMAGES, p, KINDS)["semantic_logits"], axis=-1)


def test_flip_of_a_mirror_symmetric_model_equals_one_pass():
  apply = _conv_net(4, mirror=True)
  # Passes average class probabilities (mmsegmentation's rule), returned as log-probabilities.
  np.testing.assert_allclose(_probabilities(apply, _protocol(flip=True)), _probabilities(apply, _protocol()),
                             rtol=1e-5, atol=1e-6)
  # ...which a model that is not symmetric does not do: the test can tell.
  skew = _conv_net(4)
  assert np.abs(_probabilities(skew, _protocol(flip=True)) - _probabilities(skew, _protocol())).max() > 1e-2


def test_passes_average_probabilities_not_logits():
  def apply(x):  # (8, -8) on the left half of the image, (0, 0) on the right
    left = (jnp.arange(x.shape[2]) < x.shape[2] // 2)[None, None, :, None]
    return {"semantic_logits": jnp.broadcast_to(jnp.where(left, jnp.array([8.0, -8.0]), 0.0), x.shape[:3] + (2,))}
  out = inference.dense_outputs(apply, IMAGES, _protocol(flip=True), KINDS)["semantic_logits"]
  # A left pixel is (8, -8) in one pass and (0, 0) in the mirrored one: the mean of the two passes'
  # probabilities, p = 0.75, where averaged logits (4, -4) would give 0.9997.
  want = (jax.nn.softmax(jnp.array([8.0, -8.0])) + 0.5) / 2
  np.testing.assert_allclose(np.exp(out[0, 0, 0]), want, rtol=1e-6)


# Three things (class, instance) and some background, each thing's centre on a whole pixel, in a
# 32x48 image: channel 0 holds the class, channel 1 the instance id.
_THINGS = [(1, 1, (2, 12, 3, 13)), (2, 2, (14, 28, 20, 36)), (3, 3, (4, 10, 30, 46)), (1, 4, (20, 30, 5, 15))]


def _scene():
  semantic, instance = np.zeros((32, 48), np.int32), np.zeros((32, 48), np.int32)
  for cls, inst, (y0, y1, x0, x1) in _THINGS:
    semantic[y0:y1 + 1, x0:x1 + 1], instance[y0:y1 + 1, x0:x1 + 1] = cls, inst
  return np.stack([semantic / 10, instance / 10, np.zeros_like(semantic)], -1)[None].astype(np.float32)


def _truth_model(images):
  """A 'model' that reads the classes and instances off the image and answers as a perfect one
  would, in the image's own coordinates: its offsets point at each instance's centre."""
  semantic = jnp.round(images[..., 0] * 10).astype(jnp.int32)
  instance = jnp.round(images[..., 1] * 10).astype(jnp.int32)
  out = jax.vmap(functools.partial(oracle.dense_outputs, num_classes=4, ignore_label=255))(semantic, instance)
  del out["semantic_logits"]  # the oracle spoils instance 2's class on purpose; keep it honest here
  return {"semantic_logits": 10.0 * jax.nn.one_hot(semantic, 4), **out}


def _instance_config():
  c = base_config("panoptic_deeplab")  # the head that post-processes centres and offsets
  c.dataset.thing_classes, c.dataset.label_divisor = (1, 2, 3), 1000
  c.postprocess.min_stuff_area, c.postprocess.nms_kernel = 1, 3
  return c


def test_centres_and_offsets_of_the_flipped_image_flipped_back_give_the_same_instances():
  config = _instance_config()
  post = lambda p: jax.device_get(inference.postprocess_outputs(
      inference.dense_outputs(_truth_model, _scene(), p, KINDS), config))
  one, both = post(_protocol()), post(_protocol(flip=True))
  assert one["instances"]["valid"].sum() == 3  # the oracle leaves out instance 4's centre on purpose
  for key in ("instance_map", "valid", "classes", "scores"):
    np.testing.assert_array_equal(both["instances"][key], one["instances"][key], err_msg=key)
  np.testing.assert_array_equal(both["panoptic"], one["panoptic"])
  # The flipped pass alone, mirrored back, predicts the same offsets: x changes sign.
  flipped = inference._flip(_truth_model(jnp.flip(_scene(), axis=2)), KINDS)
  np.testing.assert_array_equal(flipped["offsets"], _truth_model(_scene())["offsets"])


def _pointing_model(images):
  """Offsets from every pixel to the image's centre, in the image's own pixels."""
  n, h, w, _ = images.shape
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  offsets = jnp.stack([(h - 1) / 2 - yy, (w - 1) / 2 - xx], -1)
  return {"semantic_logits": images, "offsets": jnp.broadcast_to(offsets, (n, h, w, 2))}


def test_offsets_scale_with_the_image():
  one = inference.dense_outputs(_pointing_model, IMAGES, _protocol(), KINDS)["offsets"]
  scaled = inference.dense_outputs(_pointing_model, IMAGES, _protocol(scales=(0.5, 2.0)), KINDS)["offsets"]
  error = np.abs(scaled - one)
  # Exact inside; at the border a half-size pass's pixels reach past the edge (0.5 px).
  assert np.median(error) < 1e-3 and error.max() <= 0.5 + 1e-4, error.max()


def _config(**kw):
  c = base_config()
  c.input.crop_size = (32, 48)
  for key, value in kw.items():
    setattr(c.eval, key, value)
  return c


@pytest.mark.parametrize("kw, match", [
    (dict(mode="tiles"), r"config.eval.mode is 'tiles': choose whole or slide"),
    (dict(scales=()), r"config.eval.scales is \(\): give one or more factors > 0"),
    (dict(scales=(1.0, -0.5)), r"factors > 0"),
    (dict(mode="slide", window=(0, 48)), r"config.eval.window is \(0, 48\): give \(height, width\)"),
    (dict(mode="slide", stride=(40, 8)), r"stride \(40, 8\) is larger than config.eval.window \(32, 48\)"),
    (dict(mode="slide", stride=(24, 36), margin=5), r"config.eval.margin is 5: .* = 4 on each axis"),
])
def test_bad_protocols_get_their_sentence(kw, match):
  with pytest.raises(UserError, match=match):
    inference.protocol(_config(**kw))


def test_the_sliding_window_defaults_to_the_crop_and_two_thirds_of_it():
  p = inference.protocol(_config(mode="slide"))
  assert p.window == (32, 48) and p.stride == (22, 32) and p.margin == (0, 0)


def test_centres_by_sort_are_those_of_top_k_ties_included():
  heat = jnp.round(jax.random.uniform(jax.random.key(5), (3, 24, 40)) * 4) / 4  # many equal peaks
  find = lambda sort: jax.vmap(lambda c: panoptic_deeplab.find_centers(c, 0.2, 3, 12, sort))(heat)
  for a, b in zip(find(False), find(True)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_eval_only_scores_the_checkpoint_under_another_protocol(panoptic_run, data_dir, tmp_path):
  import json, shutil  # pylint: disable=g-import-not-at-top,multiple-imports
  from conftest import tiny_panoptic_config  # pylint: disable=g-import-not-at-top
  from segjax.engine import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  shutil.copytree(panoptic_run, workdir)
  config = tiny_panoptic_config(data_dir, total_steps=2, eval_every=2, **{"postprocess.center_threshold": 0.0})
  step, whole = train.evaluate_checkpoint(config, workdir)
  assert step == 2
  with config.unlocked():
    config.eval.flip, config.eval.mode, config.eval.stride = True, "slide", (16, 16)
  _, flipped = train.evaluate_checkpoint(config, workdir)
  lines = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
  trained = [x for x in lines if x["kind"] == "eval"][-1]
  # The same checkpoint and protocol give the run's own figures; another protocol gives others.
  for key in ("miou", "pixel_acc", "mask_ap", "pq"):
    assert whole[key] == pytest.approx(trained[key], abs=1e-12), key
  assert flipped["miou"] != whole["miou"]
  only = [x for x in lines if x["kind"] == "eval_only"]
  assert [x["protocol"]["flip"] for x in only] == [False, True] and only[1]["protocol"]["mode"] == "slide"
  assert all(x["seconds_per_image"] > 0 for x in only)
  # Its COCO files lie apart from the run's own eval of the same step, which they do not replace.
  assert os.path.exists(f"{workdir}/eval_only/2/instances_results.json")
  assert filecmp.cmp(f"{workdir}/eval/2/instances_results.json", f"{panoptic_run}/eval/2/instances_results.json",
                     shallow=False)


def test_eval_only_without_a_checkpoint_says_so_and_creates_nothing(tmp_path):
  from segjax.engine import train  # pylint: disable=g-import-not-at-top
  config = base_config()
  with pytest.raises(UserError, match=r"No checkpoint in '.*checkpoints' to evaluate; train first without --eval_only"):
    train.evaluate_checkpoint(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
