"""The head contract (its callers name no head), and the mask classification head's parts against
known answers: the matcher against scipy, targets, point sampling, inference, losses. A head added
from outside segjax: tests/heads/test_own_head.py."""
import functools
import glob
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.optimize

from conftest import tiny_config
from segjax import heads
from segjax.engine import train
from segjax.heads import losses, matcher
from segjax.heads import mask_former
from segjax.models.mask_former_decoder import PixelDecoder, attention_mask

_SEGJAX = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "segjax")


def test_an_unknown_head_is_named_with_the_choices():
  config = tiny_config("/nonexistent")
  config.model.head = "mask_formr"
  with pytest.raises(ValueError, match=r"Unknown head 'mask_formr': choose one of eomt, eomt_semantic, mask_former, "
                                       r"panoptic_deeplab, "
                                       r"semantic \(config.model.head\)"):
    heads.get(config)


_CALLERS = tuple(sorted(os.path.relpath(p, _SEGJAX) for p in glob.glob(os.path.join(_SEGJAX, "engine", "*.py")))) + (
    "predict.py", "benchmark.py", "export.py", "data/pipeline.py")


@pytest.mark.parametrize("name", _CALLERS)
def test_the_callers_of_heads_name_no_head_and_no_output(name):
  """Everything outside segjax/heads asks the head: no head's name, no head's output key, no test
  of config.model.head."""
  source = open(os.path.join(_SEGJAX, name)).read()
  named = {k for head in heads.HEADS.values() for k in head.outputs} | set(heads.HEADS) - {"semantic"}  # a common output
  for word in sorted(named):
    assert not re.search(rf"[\"']{word}[\"']", source), (name, word)
  assert not re.search(r"\bif\b[^\n]*model\.head\b", source), name


def _scipy_total(cost, valid):
  rows, cols = scipy.optimize.linear_sum_assignment(cost[:, valid])
  return cost[:, valid][rows, cols].sum()


@pytest.mark.parametrize("queries,targets,padded,integer", [
    (7, 7, False, False),  # square
    (12, 5, False, False),  # more queries than targets
    (10, 10, True, False),  # a padded set: some targets are not real
    (16, 9, True, True),  # padded, and integer costs full of ties
])
def test_the_matcher_finds_scipys_least_total_cost_under_jit_and_vmap(queries, targets, padded, integer):
  rng = np.random.default_rng(queries * 100 + targets)
  n = 50  # four shapes: 200 matrices
  cost = rng.integers(0, 5, (n, queries, targets)).astype(np.float32) if integer else \
      rng.normal(size=(n, queries, targets)).astype(np.float32)
  valid = rng.random((n, targets)) < 0.6 if padded else np.ones((n, targets), bool)
  valid[:, 0] = True
  matched = np.asarray(jax.jit(jax.vmap(matcher.match))(cost, valid))
  for c, v, m in zip(cost, valid, matched):
    assert len(set(m[v])) == v.sum()  # one query per real target
    got = c[m[v], np.nonzero(v)[0]].sum()
    assert got == pytest.approx(_scipy_total(c, v), abs=1e-4)


def test_segment_targets_are_instances_and_stuff_classes_largest_first():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  semantic = np.array([[0, 0, 0, 1, 1, 1],
                       [0, 0, 0, 1, 1, 1],
                       [3, 3, 0, 1, 1, 1],
                       [2, 2, 0, 0, 255, 255],
                       [2, 2, 0, 0, 1, 1],
                       [0, 0, 0, 0, 1, 1]], np.int32)
  instance = np.array([[0, 0, 0, 7, 7, 7],
                       [0, 0, 0, 7, 7, 7],
                       [9, 9, 0, 7, 7, 7],
                       [0, 0, 0, 0, 0, 0],  # class 2 (a thing) with instance 0: crowd
                       [0, 0, 0, 0, 8, 8],
                       [0, 0, 0, 0, 8, 8]], np.int32)
  t = mask_former.segment_targets(tf.constant(semantic), tf.constant(instance), (1, 2, 3), 255, 5)
  t = {k: v.numpy() for k, v in t.items()}
  # Segments by area: stuff class 0 (16 pixels), instance 7 of class 1 (9), 8 of class 1 (4), 9 of class 3 (2).
  np.testing.assert_array_equal(t["segment_classes"], [0, 1, 1, 3, 0])
  np.testing.assert_array_equal(t["segment_valid"], [True, True, True, True, False])
  expected = np.select([semantic == 0, instance == 7, instance == 8, instance == 9], [0, 1, 2, 3], -1)
  np.testing.assert_array_equal(t["segments"], expected)
  few = mask_former.segment_targets(tf.constant(semantic), tf.constant(instance), (1, 2, 3), 255, 2)
  np.testing.assert_array_equal(few["segment_classes"].numpy(), [0, 1])  # the two largest
  np.testing.assert_array_equal(few["segments"].numpy(), np.where(expected < 2, expected, -1))


def test_point_sample_is_bilinear_with_zero_padding_like_grid_sample():
  rng = np.random.default_rng(0)
  maps = rng.normal(size=(5, 7, 3)).astype(np.float32)
  points = rng.uniform(-0.05, 1.05, (40, 2)).astype(np.float32)
  got = np.asarray(losses.point_sample(jnp.asarray(maps), jnp.asarray(points)))
  coords = [points[:, 0] * 5 - 0.5, points[:, 1] * 7 - 0.5]
  want = np.stack([scipy.ndimage.map_coordinates(maps[..., k], coords, order=1, mode="grid-constant", cval=0.0)
                   for k in range(3)], -1)
  np.testing.assert_allclose(got, want, atol=1e-5)


def _queries(specs, num_classes, size=(8, 8)):
  """Class logits (Q, C + 1) and mask logits (H, W, Q) of queries given as (class, score, mask)."""
  logits, masks = [], []
  for cls, score, mask in specs:
    p = np.full(num_classes + 1, (1 - score) / num_classes)
    p[cls] = score
    logits.append(np.log(p))
    masks.append(np.where(mask, 10.0, -10.0))
  return jnp.asarray(np.array(logits, np.float32)), jnp.asarray(np.stack(masks, -1).astype(np.float32))


def test_mask_former_inference_resolves_overlaps_thresholds_and_merges_stuff():
  h = w = 8
  yy, xx = np.mgrid[:h, :w]
  left, square = xx < 4, (yy >= 2) & (yy < 5) & (xx >= 5) & (xx < 8)
  bottom_right = (yy >= 6) & (xx >= 4)
  specs = [(0, 0.95, left),  # stuff 0
           (1, 0.99, square),  # thing 1
           (1, 0.90, square | (yy < 2) & (xx >= 5)),  # thing 1 again, mostly covered by the first: dropped
           (2, 0.50, bottom_right),  # below the 0.8 threshold: dropped
           (3, 0.95, np.zeros((h, w), bool)),  # an empty mask: no segment
           (0, 0.85, bottom_right)]  # stuff 0 again: merges with the first
  class_logits, mask_logits = _queries(specs, 4)
  out = jax.jit(functools.partial(mask_former._inference, thing_classes=(1, 2, 3), label_divisor=1000,
                                  object_threshold=0.8, overlap_threshold=0.8))(class_logits, mask_logits)
  out = jax.device_get(out)
  panoptic = np.full((h, w), -1)
  panoptic[left | bottom_right] = 0
  panoptic[square] = 1000 + 2  # class 1, slot 1 + 1
  np.testing.assert_array_equal(out["panoptic"], panoptic)
  np.testing.assert_array_equal(out["instances"]["valid"], [False, True, False, False, False, False])
  np.testing.assert_array_equal(out["instances"]["instance_map"], np.where(square, 2, 0))
  assert out["instances"]["classes"][1] == 1
  # Score: class probability times the mask's mean probability inside its segment.
  assert out["instances"]["scores"][1] == pytest.approx(0.99 * float(jax.nn.sigmoid(10.0)), rel=1e-4)
  # Semantic: each class's probability over queries weighted by their masks.
  assert out["semantic"][0, 0] == 0 and out["semantic"][3, 6] == 1


def test_mask_former_scores_an_instance_by_its_whole_mask_as_mask2former_does():
  """Class score times the mask's mean probability where it is on, over all of its pixels, those
  another query won included (Mask2Former's instance_inference), not over its segment alone; on
  every 4th pixel, which regions of 4-pixel bands leave exact."""
  rows = np.mgrid[:16, :16][0]
  logit_a = np.where(rows < 8, 3.0, -10.0)  # query 0: rows 0-7
  logit_b = np.select([rows >= 8, rows >= 4], [1.0, 0.5], -10.0)  # query 1: rows 4-15; 4-7 go to query 0
  logit_c = np.where((rows == 13) & (np.mgrid[:16, :16][1] == 0), 2.0, -10.0)  # one pixel, off the grid
  class_logits = np.log(np.array([[0.01, 0.99, 0.0, 0.0], [0.01, 0.0, 0.95, 0.04], [0.01, 0.0, 0.98, 0.01]])
                        + 1e-12)
  out = jax.device_get(jax.jit(functools.partial(
      mask_former._inference, thing_classes=(1, 2), label_divisor=1000, object_threshold=0.5,
      overlap_threshold=0.5))(jnp.asarray(class_logits, jnp.float32),
                              jnp.asarray(np.stack([logit_a, logit_b, logit_c], -1), jnp.float32)))
  want_map = np.where(rows < 8, 1, 2)
  want_map[13, 0] = 3
  np.testing.assert_array_equal(out["instances"]["instance_map"], want_map)
  sigmoid = lambda x: 1 / (1 + np.exp(-x))
  want = [0.99 * sigmoid(3.0), 0.95 * (8 * sigmoid(1.0) + 4 * sigmoid(0.5)) / 12, 0.98 * 0.5]
  np.testing.assert_allclose(out["instances"]["scores"], want, rtol=1e-5)


def _perfect(segments, classes, valid, order, num_classes, num_queries):
  """Class and mask logits of queries that predict the targets exactly, target j by query order[j]."""
  h, w = segments.shape
  class_logits = np.full((num_queries, num_classes + 1), -8.0, np.float32)
  class_logits[:, num_classes] = 8.0  # no object
  mask_logits = np.full((h, w, num_queries), -8.0, np.float32)
  for j in np.nonzero(valid)[0]:
    class_logits[order[j]] = -8.0
    class_logits[order[j], classes[j]] = 8.0
    mask_logits[..., order[j]] = np.where(segments == j, 8.0, -8.0)
  return jnp.asarray(class_logits), jnp.asarray(mask_logits)


@pytest.mark.parametrize("pixels", [1, 2, 7, 4099])
def test_pixel_sum_counts_every_pixel(pixels):
  x = (jax.random.uniform(jax.random.key(pixels), (pixels, 3)) > 0.5).astype(jnp.float32)
  assert np.asarray(x).sum() > 0 or pixels < 3
  np.testing.assert_array_equal(jax.jit(mask_former.pixel_sum)(x), np.asarray(x).sum(0))


def test_mask_former_losses_find_the_matching_and_grow_when_it_is_spoiled():
  cfg = tiny_config("/nonexistent", "mask_former")
  cfg.loss.num_points = 256
  segments = np.full((16, 16), -1, np.int32)
  segments[:, :8], segments[2:6, 9:13], segments[10:14, 10:14] = 0, 1, 2
  classes, valid = np.array([0, 1, 2, 0], np.int32), np.array([True, True, True, False])
  order = [5, 0, 3, 1]
  losses_of = jax.jit(functools.partial(mask_former._image_losses, loss_config=cfg.loss))
  good = losses_of(*_perfect(segments, classes, valid, order, 4, 6), jnp.asarray(segments), classes,
                   jnp.asarray(valid), jax.random.key(0))
  ce, weight, bce, dice = map(float, good)
  assert weight == pytest.approx(3 + 3 * 0.1)  # three matched queries, three "no object" at 0.1
  # The class loss is ~0 only if each target's class went to the query that predicts its mask. The
  # mask losses are not ~0: three quarters of the points are drawn where the logits are least
  # certain, on the edges, where bilinear sampling of +-8 logits gives values near 0.
  assert ce / weight < 1e-3 and bce / 3 < 0.05 and dice / 3 < 0.15
  swapped = np.array(classes)
  swapped[1], swapped[2] = 2, 1  # the queries of targets 1 and 2 predict each other's class
  bad = losses_of(*_perfect(segments, swapped, valid, order, 4, 6), jnp.asarray(segments), classes,
                  jnp.asarray(valid), jax.random.key(0))
  assert float(bad[0]) / float(bad[1]) > 1.0  # the masks still match, so the classes must be wrong
  moved = np.where(segments == 2, 1, np.where(segments == 1, -1, segments))  # target 1's mask is target 2's
  spoiled = losses_of(*_perfect(moved, classes, valid, order, 4, 6), jnp.asarray(segments), classes,
                      jnp.asarray(valid), jax.random.key(0))
  assert float(spoiled[2]) > 3 * bce and float(spoiled[3]) > 3 * dice


def test_the_auxiliary_semantic_loss_reads_the_labels_its_stride_4_pixels_fall_on():
  cfg = tiny_config("/nonexistent", "mask_former", **{"loss.semantic_top_k": 1.0})
  heads.get(cfg).tiny(cfg)
  head, n, size, c = heads.get(cfg), 2, 16, cfg.dataset.num_classes
  rng = np.random.default_rng(0)
  labels = rng.integers(0, c, (n, size, size))
  seen = rng.integers(0, c, (n, size // 4, size // 4))
  labels[:, 2::4, 2::4] = seen  # the pixel at the middle of each 4x4 cell (row and column 2)
  logits = rng.normal(size=(n, size // 4, size // 4, c)).astype(np.float32) * 3
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -np.take_along_axis(log_p, seen[..., None], -1).mean()
  q = cfg.model.decoder_kwargs.num_queries
  outputs = {"class_logits": jnp.zeros((n, 4, q, c + 1)), "mask_logits": jnp.zeros((n, 4, size // 4, size // 4, q)),
             "aux_semantic_logits": jnp.asarray(logits)}
  batch = {**head.synthetic_targets(cfg, jax.random.key(1), n, size), "semantic": jnp.asarray(labels, jnp.int32)}
  _, parts = head.loss(outputs, batch, cfg, jax.random.key(2))
  assert float(parts["semantic_ce"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_mask_former_trains_in_bfloat16_with_float32_parameters_and_losses(data_dir, tmp_path):
  config = tiny_config(data_dir, "mask_former", total_steps=2, eval_every=2, checkpoint_every=2,
                       **{"model.dtype": "bfloat16", "model.decoder_kwargs.mask_positions": True})
  heads.get(config).tiny(config)
  state = train.train_and_evaluate(config, str(tmp_path))  # evaluates at another size than its crops
  assert all(p.dtype == np.float32 for p in jax.tree.leaves(state.params))
  assert set(state.params) == {"backbone", "head"}
  assert {"positions_fc1", "positions_fc2"} <= set(state.params["head"]["pixel_decoder"])
  lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  for line in (l for l in lines if l["kind"] == "train"):
    assert all(np.isfinite(line[k]) for k in ("loss", "class_ce", "mask_ce", "mask_dice"))
  (scored,) = [l for l in lines if l["kind"] == "eval"]
  assert {"miou", "pq", "mask_ap"} <= set(scored)
  # The losses of bfloat16 outputs are float32: bfloat16's 8 bits of mantissa would round a mean
  # over thousands of points.
  head, n, size = heads.get(config), 2, 32
  batch = {**head.synthetic_targets(config, jax.random.key(1), n, size),
           "semantic": jnp.zeros((n, size, size), jnp.int32)}
  q, c = config.model.decoder_kwargs.num_queries, config.dataset.num_classes
  outputs = {"class_logits": jax.random.normal(jax.random.key(2), (n, 4, q, c + 1), jnp.bfloat16),
             "mask_logits": jax.random.normal(jax.random.key(3), (n, 4, size // 4, size // 4, q), jnp.bfloat16)}
  loss, parts = head.loss(outputs, batch, config, jax.random.key(4))
  assert loss.dtype == jnp.float32 and all(v.dtype == jnp.float32 for v in parts.values())


def test_a_small_mask_still_guides_attention_at_the_coarsest_level():
  logits = np.full((1, 40, 40, 3), -4.0, np.float32)  # stride 4 of a 160 crop; three queries
  logits[0, 9:15, 9:15, 0] = 4.0  # a 24-pixel object, under one stride-32 cell
  logits[0, :, :20, 1] = 4.0  # the left half
  attend = np.asarray(attention_mask(jnp.asarray(logits), (5, 5))).reshape(1, 3, 5, 5)
  # The object's cell and only it (an antialiased resize averages it below 0 over its 8x8 window).
  assert attend[0, 0].sum() == 1 and attend[0, 0, 1, 1]
  assert attend[0, 1, :, :2].all() and not attend[0, 1, :, 3:].any()
  assert attend[0, 2].all()  # a mask on nowhere: everywhere


@pytest.mark.parametrize("positions", [False, True])
def test_mask_positions_tell_apart_pixels_of_equal_content(positions):
  # Features equal everywhere (zeros: every ConvBN at init passes them as zeros, borders included),
  # so whatever tells two mask-feature pixels apart is position.
  features = {f"stage{i + 1}": jnp.zeros((2, 16 // 2**i, 24 // 2**i, 8)) for i in range(4)}
  decoder = PixelDecoder(hidden=16, mask_dim=8, positions=positions)
  variables = decoder.init(jax.random.key(0), features, False)
  mask_features, _ = decoder.apply(variables, features, False)
  assert mask_features.shape == (2, 16, 24, 8)
  for image in np.asarray(mask_features):  # every image alike: a function of position alone
    distinct = len(np.unique(image.reshape(-1, 8).round(6), axis=0))
    assert distinct == (16 * 24 if positions else 1)
