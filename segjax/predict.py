"""Predicts with a trained run and draws what it sees.

python -m segjax.predict --workdir=/tmp/panoptic --images=a.png,b.jpg --out=/tmp/pred

For each image writes OUT/<name>.png (input | semantic map | instances, each in its own colour with
class and score), OUT/<name>_masks.npz (semantic, panoptic, instance_map of slot + 1, classes, scores) and
OUT/<name>_results.json (COCO-format instance results).
"""
import json
import os
import sys

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from segjax import train, visualize
from segjax.checkpoint import Checkpointer
from segjax.errors import UserError
from segjax.evaluation.coco import encode_mask
from segjax.models import build_segmenter

_WORKDIR = flags.DEFINE_string("workdir", None, "A segjax run's workdir (config.json and checkpoints/).")
_IMAGES = flags.DEFINE_list("images", None, "Image files to segment.")
_OUT = flags.DEFINE_string("out", None, "Directory for the pictures, masks and results.")
_STRIDE = 32  # images are padded to a multiple of the deepest backbone stride


def load_run(workdir):
  """(config, model, variables) of the latest checkpoint in `workdir`."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise UserError(f"No config.json in '{workdir}'; pass the --workdir of a segjax.main run.")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if (not isinstance(config.input.crop_size, (list, tuple)) or config.dataset.get("label_divisor") is None
      or "init_from" not in config.model):
    raise UserError(f"'{workdir}' was trained by an older segjax (its config.json lacks keys this "
                    "version reads, and its variables are named otherwise); train it again with this "
                    "version.")
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
  step = ckpt.latest_step()
  if step is None:
    raise UserError(f"No checkpoint in '{ckpt.directory}'; train first with "
                    f"python -m segjax.main --workdir={workdir}.")
  model = build_segmenter(config.model, config.dataset.num_classes)
  tx, _ = train.make_optimizer(config)
  like = train.create_train_state(model, tx, jax.random.key(0), tuple(config.input.crop_size))
  state, _ = ckpt.restore(step, like)
  ckpt.close()
  return config, model, {"params": state.params, "batch_stats": state.batch_stats}


def read_image(path):
  """(H, W, 3) float32 in [0, 1], or UserError naming what is wrong with the file."""
  if not os.path.isfile(path):
    raise UserError(f"Image '{path}' does not exist.")
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"), np.float32) / 255.0
  except (UnidentifiedImageError, OSError) as e:
    raise UserError(f"'{path}' is not an image that Pillow can read ({type(e).__name__}).") from e


def make_predict_fn(config, model):
  """Jitted image -> semantic map, instances and panoptic map, post-processed on device."""

  @jax.jit
  def predict(variables, image):
    out = model.apply(variables, image[None], train=False)
    semantic = jnp.argmax(out["semantic_logits"], -1)
    result = {"semantic": semantic}
    if "center" in out:
      post = train.postprocess_batch(out, semantic, config)
      result.update(post["instances"], panoptic=post["panoptic"])
    return jax.tree.map(lambda x: x[0], result)

  return predict


def draw(image, pred, class_names, colormap=None):
  """input | semantic map (in the dataset's colours) | instances with class and score, side by side."""
  n = len(class_names)
  semantic = visualize.colorize(pred["semantic"], n, colormap=colormap)
  inst = np.zeros_like(semantic)
  colours = visualize.palette(len(pred.get("valid", [])) + 1)[1:]
  labels = []
  for k in np.nonzero(pred.get("valid", []))[0]:
    mask = pred["instance_map"] == k + 1
    inst[mask] = colours[k]
    ys, xs = np.nonzero(mask)
    labels.append(((xs.mean(), ys.mean()), f"{class_names[pred['classes'][k]]} {pred['scores'][k]:.2f}"))
  panel = Image.fromarray(inst)  # text drawn on its own panel cannot spill onto the others
  pen = ImageDraw.Draw(panel)
  for (x, y), text in labels:
    pen.text((x, y), text, fill=(255, 255, 255), anchor="mm", stroke_width=1, stroke_fill=(0, 0, 0))
  return Image.fromarray(np.concatenate([(image * 255).astype(np.uint8), semantic, np.asarray(panel)],
                                        axis=1))


def predict_files(workdir, images, out):
  config, model, variables = load_run(workdir)
  images = [(path, read_image(path)) for path in images]  # every file checked before any work
  os.makedirs(out, exist_ok=True)
  class_names = [str(i) for i in range(config.dataset.num_classes)]
  names_path = os.path.join(workdir, "class_names.json")
  if os.path.exists(names_path):
    with open(names_path) as f:
      class_names = json.load(f)
  predict = make_predict_fn(config, model)
  for image_id, (path, image) in enumerate(images):
    h, w = image.shape[:2]
    padded = np.zeros((-(-h // _STRIDE) * _STRIDE, -(-w // _STRIDE) * _STRIDE, 3), np.float32)
    padded[:h, :w] = image
    pred = jax.device_get(predict(variables, padded))
    pred = {k: (v[..., :h, :w] if np.ndim(v) >= 2 else v) for k, v in pred.items()}
    if "instance_map" in pred:  # an instance found only in the padding is no instance
      found = np.zeros(len(pred["valid"]) + 1, bool)
      found[pred["instance_map"]] = True
      pred["valid"] = pred["valid"] & found[1:]
    stem = os.path.join(out, os.path.splitext(os.path.basename(path))[0])
    draw(image, pred, class_names, config.dataset.get("colormap")).save(stem + ".png")
    np.savez_compressed(stem + "_masks.npz", **pred)
    results = [{"image_id": image_id, "category_id": int(pred["classes"][k]),
                "segmentation": encode_mask(pred["instance_map"] == k + 1), "score": float(pred["scores"][k])}
               for k in np.nonzero(pred.get("valid", []))[0]]
    with open(stem + "_results.json", "w") as f:
      json.dump(results, f)
  return out


def main(argv):
  del argv
  try:
    predict_files(_WORKDIR.value, _IMAGES.value, _OUT.value)
  except UserError as e:
    sys.exit(f"segjax: error: {e}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir", "images", "out"])
  app.run(main)
