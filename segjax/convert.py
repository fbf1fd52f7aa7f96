"""PyTorch weights -> a segjax weights file: torchvision's and timm's ResNets and ConvNeXts.

python -m segjax.convert --arch=resnet50 --source=torchvision --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_torchvision_v1.safetensors

Reads a state dict from a `.pth` (needs PyTorch) or a `.safetensors` file (does not;
segjax/weights/state_dict.py), converts it by the source's names (segjax/weights/torch_cnn.py) and
writes `backbone/...` and, when the checkpoint has one, the ImageNet `classifier/...`. Prints its
one line; -v 0 adds the libraries' log lines.
"""
import os
import sys

from absl import app, flags
import jax

from segjax import logs, weights
from segjax.errors import UserError
from segjax.weights import torch_cnn
from segjax.weights.state_dict import read_state_dict


def convert_file(in_path, out_path, arch, source):
  """Converts `in_path` to `out_path`, which must not exist yet; returns a one-line summary."""
  torch_cnn.check_names(arch, source)
  weights.check_extension(out_path, "--out")
  if os.path.exists(out_path):
    raise UserError(f"--out '{out_path}' exists; remove it or choose another file (nothing is overwritten).")
  variables = torch_cnn.convert(read_state_dict(in_path), arch, source, where=f"'{in_path}'")
  weights.save(out_path, variables, {"arch": arch, "source": source,
                                     "converted_from": os.path.basename(in_path)})
  count = sum(x.size for x in jax.tree.leaves(variables))
  parts = " and ".join(sorted(variables["params"]))
  return f"Wrote {out_path}: {source}'s {arch}, {parts}, {count:,} numbers."


def _define_flags():
  """Only when run as a program: predict and benchmark define flags of the same names."""
  flags.DEFINE_string("arch", None, "Architecture: resnet18..152, convnext_tiny..large.")
  flags.DEFINE_enum("source", "torchvision", list(torch_cnn.SOURCES), "Whose naming the checkpoint uses.")
  flags.DEFINE_string("in", None, "PyTorch checkpoint: .pth state dict or .safetensors.")
  flags.DEFINE_string("out", None, "segjax weights file to write: .safetensors or .npz.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logs.for_reading()
  f = flags.FLAGS
  try:
    for name in ("arch", "in", "out"):
      if not f[name].value:
        raise UserError(f"--{name} is required.")
    jax.config.update("jax_platforms", "cpu")  # no accelerator is needed, nor taken from a run
    print(convert_file(os.path.expanduser(f["in"].value), os.path.expanduser(f.out), f.arch, f.source))
  except UserError as e:
    sys.exit(f"segjax.convert: error: {e}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
