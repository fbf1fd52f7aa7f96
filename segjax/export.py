"""Exports a trained run's inference function, post-processing included, for serving without segjax.

python -m segjax.export --workdir=/tmp/panoptic --out=/tmp/export [--format=stablehlo|savedmodel]
    [--size=256,256] [--platforms=cpu,cuda]

Writes OUT/inference.jax (jax.export's serialized StableHLO, the weights inside) and
OUT/signature.json (input shape, outputs, class names, protocol, the checkpoint's step); with --format=savedmodel also
OUT/saved_model, a TensorFlow SavedModel through jax2tf. The function takes images
(batch, height, width, 3) float32 in [0, 1] at the exported size (pad smaller ones with zeros at
the bottom and right, as eval does), any batch size, and returns a flat dict: semantic, and with a
head that predicts instances panoptic, instance_map, valid, classes, scores. README.md shows how to
call each.
The run may still be training: its newest complete checkpoint is exported. -v 0 adds the libraries'
log lines.
"""
import json
import os
import shutil
import sys
import tempfile

from absl import app, flags
import jax
import jax.numpy as jnp

from segjax import logs
from segjax.engine import inference, trained_run
from segjax.errors import UserError

FILE = "inference.jax"


def flat_inference_fn(model, config, variables, sort=False):
  """images -> flat dict of the common outputs, with the weights closed over."""
  infer = inference.make_inference_fn(model, config, sort)

  return lambda images: inference.flatten(infer(variables, images))


def export(workdir, out, fmt="stablehlo", size=None, platforms=None):
  """Writes the run's exported inference function into `out`; returns what signature.json says
  of it (its step among the rest)."""
  out = os.path.normpath(out)
  if os.path.exists(out):
    raise UserError(f"'{out}' already exists; pass a new --out (nothing there is overwritten).")
  if fmt == "savedmodel":
    _tensorflow()  # before any work
  config, model, variables, step = trained_run.load(workdir)
  height, width = size or config.input.eval_size
  serve = jax.jit(flat_inference_fn(model, config, variables))
  batch, = jax.export.symbolic_shape("batch")
  spec = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.float32)
  exported = jax.export.export(serve, platforms=platforms)(spec)
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=os.path.basename(out) + ".partial.")
  try:
    with open(os.path.join(tmp, FILE), "wb") as f:
      f.write(exported.serialize())
    outputs = jax.eval_shape(serve, jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32))
    signature = {"input": {"shape": ["batch", height, width, 3], "dtype": "float32", "range": [0, 1]},
                 "outputs": {k: {"shape": ["batch", *v.shape[1:]], "dtype": str(v.dtype)} for k, v in outputs.items()},
                 "class_names": trained_run.class_names(workdir),
                 "thing_classes": list(config.dataset.thing_classes or []),
                 "label_divisor": config.dataset.label_divisor, "platforms": list(exported.platforms),
                 "protocol": inference.protocol(config)._asdict(), "step": step}
    with open(os.path.join(tmp, "signature.json"), "w") as f:
      json.dump(signature, f, indent=2)
    if fmt == "savedmodel":
      # TensorFlow 2.21 reads older StableHLO than jax writes: top-K by sort (Head.postprocess).
      _saved_model(flat_inference_fn(model, config, variables, sort=True), (height, width), platforms,
                   os.path.join(tmp, "saved_model"))
    os.rename(tmp, out)  # a failed export leaves nothing under --out
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return signature


def _tensorflow():
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(f"--format=savedmodel needs TensorFlow ({e}); install it or use --format=stablehlo.") from e
  return tf


def _saved_model(serve, size, platforms, path):
  """A TensorFlow SavedModel whose serving signature calls `serve` (lowered by jax2tf)."""
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  tf = _tensorflow()
  fn = jax2tf.convert(serve, polymorphic_shapes=["(batch, ...)"], with_gradient=False,
                      native_serialization_platforms=platforms)
  module = tf.Module()
  module.serve = tf.function(fn, autograph=False,
                             input_signature=[tf.TensorSpec([None, *size, 3], tf.float32, name="images")])
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  f = flags.FLAGS
  logs.for_reading(tensorflow=f.format == "savedmodel")
  try:
    size = None
    if f.size:
      if len(f.size) != 2 or not all(v.isdigit() and int(v) > 0 for v in f.size):
        raise UserError(f"--size={','.join(f.size)}: give height,width, two whole numbers > 0.")
      size = tuple(int(v) for v in f.size)
    unknown = set(f.platforms or ()) - {"cpu", "cuda", "rocm", "tpu"}
    if unknown:
      raise UserError(f"--platforms has {', '.join(sorted(unknown))}: choose among cpu, cuda, rocm and tpu.")
    signature = export(f.workdir, f.out, f.format, size, f.platforms and tuple(f.platforms))
    print(f"Exported step {signature['step']} of {f.workdir} into {f.out}.")
  except UserError as e:
    sys.exit(f"segjax: error: {e}")


if __name__ == "__main__":  # flags only when run as a program: predict and benchmark define the same names
  flags.DEFINE_string("workdir", None, "A segjax run's workdir (config.json and checkpoints/).")
  flags.DEFINE_string("out", None, "Directory to write the exported function into; must not exist.")
  flags.DEFINE_enum("format", "stablehlo", ["stablehlo", "savedmodel"],
                    "stablehlo: jax.export only; savedmodel: also a TensorFlow SavedModel.")
  flags.DEFINE_list("size", None, "height,width of the images; config.input.eval_size if unset.")
  flags.DEFINE_list("platforms", None, "Platforms to lower for (cpu, cuda, rocm, tpu); this machine's if unset.")
  flags.mark_flags_as_required(["workdir", "out"])
  app.run(main)
