"""Predicts with a trained run and draws what it sees.

python -m segjax.predict --workdir=/tmp/panoptic --images=a.png,photos/,'shots/*.jpg' --out=/tmp/pred

--images takes files, folders (their images) and globs. Photos may be of any size and aspect ratio,
grayscale, RGBA (composited on black), 16-bit (scaled by 65535) and EXIF-rotated (turned upright
first). Inference is config.eval's protocol, on each image (resized to config.eval's base size where
a recipe sets one, its outputs resized back) padded to a multiple of 32.

For each image writes OUT/<name>.png (input | semantic map | instances, each in its own colour with
class and score), OUT/<name>_masks.npz (semantic, panoptic, instance_map of slot + 1, classes, scores) and
OUT/<name>_results.json (COCO-format instance results). A file that cannot be read gets its sentence
and the others are still written; the exit status is then 1.

It reads the run's newest complete checkpoint, and may while the run trains. It prints what it wrote
and its own sentences; -v 0 adds the libraries' log lines (Orbax, TensorFlow).
"""
import glob
import json
import os
import sys
from typing import NamedTuple

from absl import app, flags
import jax
import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from segjax import logs, visualize
from segjax.engine import compilation, host_memory, inference, trained_run
from segjax.errors import UserError
from segjax.evaluation.coco import encode_mask



def image_paths(entries):
  """The files that `entries` (files, folders, globs) name, in order, and a sentence for each entry
  that names none."""
  known = set(Image.registered_extensions())
  paths, problems = [], []
  for entry in entries:
    if os.path.isfile(entry):  # a name such as img[1].png is a file before it is a pattern
      found, what = [entry], None
    elif os.path.isdir(entry):
      found = sorted(os.path.join(entry, name) for name in os.listdir(entry)
                     if os.path.splitext(name)[1].lower() in known and os.path.isfile(os.path.join(entry, name)))
      what = f"Folder '{entry}' holds no image files (by extension)."
    elif glob.has_magic(entry):
      found = sorted(p for p in glob.glob(entry, recursive=True) if os.path.isfile(p))
      what = f"No file matches '{entry}'."
    else:
      found, what = [entry], None
    if not found:
      problems.append(what)
    paths.extend(p for p in found if p not in paths)
  return paths, problems


def read_image(path):
  """(H, W, 3) float32 in [0, 1], upright, or UserError naming what is wrong with the file."""
  if not os.path.isfile(path):
    raise UserError(f"Image '{path}' does not exist.")
  try:
    with Image.open(path) as im:
      im = ImageOps.exif_transpose(im)  # photos are stored as the sensor saw them
      if im.mode.startswith("I") or im.mode == "F":  # 16-bit (or wider) grayscale
        gray = np.asarray(im, np.float32) / (1.0 if im.mode == "F" else 65535.0)
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=-1)
      if "A" in im.getbands() or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), np.float32) / 255.0
        return rgba[..., :3] * rgba[..., 3:]  # composited on black
      return np.asarray(im.convert("RGB"), np.float32) / 255.0
  except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
    raise UserError(f"'{path}' is not an image that Pillow can read ({type(e).__name__}: {e}).") from e


def make_predict_fn(config, model):
  """Jitted (variables, image, sizes=None, canvas=None) -> semantic map, instances and panoptic map
  of one image; with `sizes` (the image's height and width in `image`, then its own) the outputs
  are resized back to a `canvas` of its own size (inference.make_inference_fn's `back`)."""
  infer = inference.make_inference_fn(model, config)

  def predict(variables, image, sizes=None, canvas=None):
    back = None if sizes is None else (sizes[None], canvas)
    return jax.tree.map(lambda x: x[0], infer(variables, image[None], back))

  return jax.jit(predict, static_argnames="canvas")


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


def predict_one(predict, variables, image, base_size=None):
  """What the model predicts for one (H, W, 3) image, at its size; inferred at `base_size` as eval
  infers (inference.base_scaled), the outputs resized back."""
  h, w = image.shape[:2]
  size = inference.base_scaled((h, w), base_size)
  if size != (h, w):
    image = jax.image.resize(image, size + (3,), "bilinear", antialias=False)  # as eval's tf.image.resize
  padded = np.zeros(inference.padded_size(size) + (3,), np.float32)
  padded[:size[0], :size[1]] = image
  if size == (h, w):
    pred = jax.device_get(predict(variables, padded))
  else:  # outputs on the image's size padded as well: one compile per padded size, not per photo
    sizes = np.asarray(size + (h, w), np.int32)
    pred = jax.device_get(predict(variables, padded, sizes, inference.padded_size((h, w))))
  pred = inference.flatten(pred)
  pred = {k: (v[..., :h, :w] if np.ndim(v) >= 2 else v) for k, v in pred.items()}
  if "instance_map" in pred:  # an instance found only in the padding is no instance
    found = np.zeros(len(pred["valid"]) + 1, bool)
    found[pred["instance_map"]] = True
    pred["valid"] = pred["valid"] & found[1:]
  return pred


class Outcome(NamedTuple):
  step: int  # the checkpoint predicted with
  written: list  # OUT/<stem>.png and the rest, one stem for each image, in order
  problems: list  # a sentence for each input that could not be segmented


def predict_files(workdir, entries, out):
  """Segments every image `entries` names into `out` with the run's newest complete checkpoint."""
  config, model, variables, step = trained_run.load(workdir)
  paths, problems = image_paths(entries)
  os.makedirs(out, exist_ok=True)
  class_names = trained_run.class_names(workdir) or [str(i) for i in range(config.dataset.num_classes)]
  predict = make_predict_fn(config, model)
  written = []
  for image_id, path in enumerate(paths):
    try:
      image = read_image(path)
    except UserError as e:
      problems.append(str(e))
      continue
    pred = predict_one(predict, variables, image, inference.eval_base_size(config))
    stem = name = os.path.splitext(os.path.basename(path))[0]
    for n in range(2, len(paths) + 2):  # a.png and a.jpg, or two folders' a.png: a and a_2
      if stem not in written:
        break
      stem = f"{name}_{n}"
    written.append(stem)
    stem = os.path.join(out, stem)
    draw(image, pred, class_names, config.dataset.get("colormap")).save(stem + ".png")
    np.savez_compressed(stem + "_masks.npz", **pred)
    results = [{"image_id": image_id, "category_id": int(pred["classes"][k]),
                "segmentation": encode_mask(pred["instance_map"] == k + 1), "score": float(pred["scores"][k])}
               for k in np.nonzero(pred.get("valid", []))[0]]
    with open(stem + "_results.json", "w") as f:
      json.dump(results, f)
  return Outcome(step, written, problems)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  host_memory.reuse_freed_memory()  # before any other thread allocates
  logs.for_reading()
  f = flags.FLAGS
  compilation.enable(f.compilation_cache)
  try:
    step, written, problems = predict_files(f.workdir, f.images, f.out)
  except UserError as e:
    sys.exit(f"segjax: error: {e}")
  for problem in problems:
    print(f"segjax: error: {problem}", file=sys.stderr)
  if written:
    print(f"Segmented {len(written)} image{'s' * (len(written) != 1)} into {f.out} with step {step} of "
          f"{f.workdir}.")
  if problems:
    sys.exit(f"segjax: {len(problems)} of the inputs could not be segmented (above); the others are in "
             f"{f.out}.")


if __name__ == "__main__":  # flags only when run as a program: export and benchmark define the same names
  flags.DEFINE_string("workdir", None, "A segjax run's workdir (config.json and checkpoints/).")
  flags.DEFINE_list("images", None, "Image files, folders of images and globs to segment.")
  flags.DEFINE_string("out", None, "Directory for the pictures, masks and results.")
  compilation.define_flag()
  flags.mark_flags_as_required(["workdir", "images", "out"])
  app.run(main)
