"""Eval at a base size (config.input.base_size), in size buckets, as mmsegmentation scores ADE20K:
each image resized to fit the base size, inferred there, its logits resized back to the image and
scored at its own size. Checked against NumPy on fake ADE20K files of mixed sizes."""
import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import tiny_config
from fakes import ade20k as fake_ade
from segjax import data
from segjax.engine import inference, parallel, train
from segjax.engine.evaluator import evaluate
from segjax.engine.metrics_writer import MetricsWriter

SIZES = [(24, 32), (40, 28), (16, 21), (48, 48), (24, 44), (30, 30), (20, 36), (36, 20), (44, 24)]
BASE = (64, 32)  # every image resized: up (16x21 -> 32x42) and down (48x48 -> 32x32)


def _regions(h, w):  # annotation values: classes 4, 8 and 29 after ADE20K's shift by one
  return [(5, (0, h // 2, 0, w)), (9, (h // 2, h, 0, w // 2)), (30, (h // 2, h, w // 2, w))]


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("ade"))
  fake_ade.write(root, {"train": fake_ade.IMAGES["train"],
                        "validation": [(n, h, w, False, _regions(h, w)) for n, (h, w) in enumerate(SIZES, 1)]})
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  config = tiny_config(data_dir, **{
      "dataset.name": "ade20k", "dataset.manual_dir": root, "dataset.num_classes": None,
      "dataset.thing_classes": None, "dataset.ignore_label": None, "dataset.label_divisor": None,
      "dataset.label_ids": None, "input.base_size": BASE, "eval.buckets": 3})
  config, names = data.resolve(config)
  return config, names, data_dir


class _PixelModel:
  """Logits a fixed linear map of each pixel's colour: they vary across every image, so a resize
  off by a pixel changes the argmax somewhere."""

  def __init__(self, classes, labelled=(4, 8, 29)):  # the classes the regions below are labelled
    chosen = np.zeros(classes, bool)
    chosen[list(labelled)] = True
    self.weights = jnp.where(chosen, jax.random.normal(jax.random.key(0), (3, classes)) * 20.0, 0.0)
    self.bias = jnp.where(chosen, 0.0, -100.0)

  def apply(self, variables, images, train):
    del variables, train
    return {"semantic_logits": (images - 0.5) @ self.weights + self.bias}


def _resize(x, height, width):
  """Bilinear resize of (h, w, C), as torch's F.interpolate(align_corners=False) without antialias."""
  def taps(n_in, n_out):
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
    low = np.minimum(np.floor(src).astype(int), n_in - 1)
    return low, np.minimum(low + 1, n_in - 1), (src - low)
  y0, y1, ty = taps(x.shape[0], height)
  x0, x1, tx = taps(x.shape[1], width)
  rows = x[y0] * (1 - ty)[:, None, None] + x[y1] * ty[:, None, None]
  return rows[:, x0] * (1 - tx)[None, :, None] + rows[:, x1] * tx[None, :, None]


@pytest.fixture(scope="module")
def evaluated(ade, tmp_path_factory):
  config, names, _ = ade
  model = _PixelModel(config.dataset.num_classes)
  mesh = parallel.make_mesh()
  eval_fn = jax.jit(functools.partial(train.eval_step, infer=inference.make_inference_fn(model, config),
                                      config=config))
  state = collections.namedtuple("State", "params batch_stats")({}, {})
  eval_data = data.EvalData(config, parallel.host_batch_size(config.eval_batch_size))
  outputs = []
  record = lambda state, batch: outputs.append((batch, eval_fn(state, batch))) or outputs[-1][1]
  workdir = str(tmp_path_factory.mktemp("eval"))
  writer = MetricsWriter(workdir)
  try:
    scores = evaluate(record, state, eval_data, mesh, config, names, 1, workdir, writer)
  finally:
    writer.close()
  return model, eval_data, jax.device_get(outputs), scores


def test_images_are_resized_to_the_base_size_and_bucketed(ade, evaluated):
  config, _, data_dir = ade
  _, eval_data, outputs, _ = evaluated
  assert len(eval_data.buckets) == 3 and eval_data.padded_share < 0.2
  assert all(n % 32 == 0 for b in eval_data.buckets for n in b.canvas)  # the deepest stride: a ViT drops the rest
  originals = {int(ex["image_id"]): ex["image"] / 255.0 for ex in tfds.as_numpy(
      tfds.builder("segjax_ade20k", data_dir=data_dir).as_dataset(split="validation"))}
  seen = []
  for batch, _ in outputs:
    for i in np.nonzero(batch["valid"])[0]:
      h, w, ih, iw = (int(batch[k][i]) for k in ("height", "width", "input_height", "input_width"))
      original = originals[int(batch["image_id"][i])]
      assert (h, w) == original.shape[:2] and (ih, iw) == inference.base_scaled((h, w), BASE)
      np.testing.assert_allclose(batch["image"][i][:ih, :iw], _resize(original, ih, iw), atol=1e-5)
      assert not batch["image"][i][ih:].any() and not batch["image"][i][:, iw:].any()  # padded with 0
      seen.append((h, w))
  assert sorted(seen) == sorted(SIZES)


def test_logits_resized_back_and_scored_at_each_images_size_equal_numpy(ade, evaluated):
  config, _, _ = ade
  model, _, outputs, scores = evaluated
  n = config.dataset.num_classes
  confusion = np.zeros((n, n), np.int64)
  for batch, out in outputs:
    logits = np.asarray(model.apply(None, batch["image"], False)["semantic_logits"])
    for i in np.nonzero(batch["valid"])[0]:
      h, w, ih, iw = (int(batch[k][i]) for k in ("height", "width", "input_height", "input_width"))
      expected = _resize(logits[i][:ih, :iw].astype(np.float64), h, w).argmax(-1)
      np.testing.assert_array_equal(out["semantic"][i][:h, :w], expected)
      truth = batch["semantic"][i][:h, :w]
      keep = truth != config.dataset.ignore_label
      confusion += np.bincount(truth[keep] * n + expected[keep], minlength=n * n).reshape(n, n)
  tp = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - tp
  assert scores["miou"] == pytest.approx(np.mean(tp[union > 0] / union[union > 0]), abs=1e-12)
  assert 0.0 < scores["miou"] < 1.0


def test_predict_resizes_as_eval_does(ade, evaluated):
  from segjax import predict  # pylint: disable=g-import-not-at-top
  config, _, _ = ade
  model, _, outputs, _ = evaluated
  batch, out = outputs[0]
  i = int(np.nonzero(batch["valid"])[0][0])
  h, w, ih, iw = (int(batch[k][i]) for k in ("height", "width", "input_height", "input_width"))
  image = jax.image.resize(jnp.asarray(batch["image"][i][:ih, :iw]), (h, w, 3), "bilinear")  # any image of (h, w)
  pred = predict.predict_one(predict.make_predict_fn(config, model), None, np.asarray(image), BASE)
  assert pred["semantic"].shape == (h, w)
  resized = np.asarray(jax.image.resize(image, (ih, iw, 3), "bilinear", antialias=False))
  logits = np.asarray(model.apply(None, resized, False)["semantic_logits"], np.float64)
  np.testing.assert_array_equal(pred["semantic"], _resize(logits, h, w).argmax(-1))


def _scores(config, model, workdir):
  mesh = parallel.make_mesh()
  eval_fn = jax.jit(functools.partial(train.eval_step, infer=inference.make_inference_fn(model, config),
                                      config=config))
  state = collections.namedtuple("State", "params batch_stats")({}, {})
  writer = MetricsWriter(workdir)
  try:
    return evaluate(eval_fn, state, data.EvalData(config, parallel.host_batch_size(config.eval_batch_size)), mesh,
                    config, [str(c) for c in range(config.dataset.num_classes)], 1, workdir, writer)
  finally:
    writer.close()


def test_one_canvas_or_many_score_alike(ade, evaluated, tmp_path):
  config, _, _ = ade
  model, eval_data, _, scores = evaluated
  one = config.copy_and_resolve_references()
  one.eval.buckets = 1
  assert len(eval_data.buckets) > 1 and len(data.EvalData(one, 8).buckets) == 1
  assert _scores(one, model, str(tmp_path)) == pytest.approx(scores, abs=1e-12)  # the model sees each pixel alone


def test_processes_share_each_bucket_in_whole_batches(ade, monkeypatch):
  config, _, _ = ade
  monkeypatch.setattr(parallel, "on_process_zero", lambda fn, what: None)  # built by the fixture
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  held = []
  for process in (0, 1):
    monkeypatch.setattr(jax, "process_index", lambda process=process: process)
    held.append(list(data.EvalData(config, host_batch=2)))
  assert len(held[0]) == len(held[1])
  ids = []
  for a, b in zip(*held):
    assert a["image"].shape == b["image"].shape and a["semantic"].shape == b["semantic"].shape
    ids += list(a["image_id"][a["valid"]]) + list(b["image_id"][b["valid"]])
  assert sorted(ids) == list(range(len(SIZES)))  # every image once, on one process


def test_pictures_show_each_image_at_its_own_size():
  from segjax import visualize  # pylint: disable=g-import-not-at-top
  images = np.zeros((2, 4, 4, 3), np.float32)
  images[0, :2, :2] = np.arange(4).reshape(2, 2, 1) + 1  # a 2x2 image at the base size, padded to 4x4
  images[1, :3, :1] = 7  # a 3x1 one
  shown = visualize.at_label_size(images, [(2, 2), (3, 1)], [(4, 4), (3, 2)], (5, 6))
  assert shown.shape == (2, 5, 6, 3)
  np.testing.assert_array_equal(shown[0, :4, :4, 0], np.kron([[1, 2], [3, 4]], np.ones((2, 2))))
  assert not shown[0, 4:].any() and not shown[0, :, 4:].any()
  np.testing.assert_array_equal(shown[1, :3, :2, 0], 7)
  assert not shown[1, :, 2:].any()


def test_outputs_past_the_image_come_from_the_models_padding_not_its_edge():
  # An image 2 rows tall on a 4-row input canvas, resized back to 4 rows on a 6-row canvas.
  rows = jnp.arange(4, dtype=jnp.float32).reshape(4, 1, 1)
  out = inference.resize_back({"x": rows}, jnp.array([2, 1, 4, 1]), (6, 1), {})["x"]
  np.testing.assert_allclose(out[:, 0, 0], [0, 0.25, 0.75, 1, 1.75, 2.25])  # the last two: rows 1-3
