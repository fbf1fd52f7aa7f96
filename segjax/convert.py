"""PyTorch weights -> a segjax weights file: torchvision's and timm's ResNets and ConvNeXts; timm's,
DINOv2's and DINOv3's ViTs and Hugging Face's EoMT.

python -m segjax.convert --arch=resnet50 --source=torchvision --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_torchvision_v1.safetensors
python -m segjax.convert --arch=vit_large_patch14_reg4_dinov2 --source=timm --in=model.safetensors \
    --out=~/.cache/segjax/dinov2_vitl14_reg4.safetensors

Reads a state dict from a `.pth` (needs PyTorch) or a `.safetensors` file (does not;
segjax/weights/state_dict.py), converts it by the source's names (segjax/weights/torch_cnn.py,
torch_vit.py) and writes `backbone/...` and, when the checkpoint has one, the ImageNet
`classifier/...` or EoMT's `head/...`. A ViT's file also records the mean and std its model
standardises with and the keyword arguments its shapes need beyond --arch's (a patch size or
position grid). Prints its one line; -v 0 adds the libraries' log lines.
"""
import os
import sys

from absl import app, flags
import jax

from segjax import logs, weights
from segjax.errors import UserError
from segjax.weights import big_vision, torch_cnn, torch_vit
from segjax.weights.state_dict import read_state_dict


def convert_file(in_path, out_path, arch, source, patch=None, grid=None):
  """Converts `in_path` to `out_path`, which must not exist yet; returns a one-line summary. A ViT's
  patch embedding may be resampled to `patch` pixels and its position embedding resized to `grid`."""
  vit = arch in torch_vit.ARCHS
  (torch_vit if vit else torch_cnn).check_names(arch, source)
  if (patch or grid) and not vit:
    raise UserError(f"--patch and --grid resize a ViT's embeddings; {arch} is not a ViT.")
  weights.check_extension(out_path, "--out")
  if os.path.exists(out_path):
    raise UserError(f"--out '{out_path}' exists; remove it or choose another file (nothing is overwritten).")
  metadata = {"arch": arch, "source": source, "converted_from": os.path.basename(in_path)}
  if vit:
    arrays = big_vision.read_npz(in_path) if source == "siglip" else read_state_dict(in_path)
    variables, kwargs = torch_vit.convert(arrays, arch, source, f"'{in_path}'", patch, grid)
    metadata.update(torch_vit.metadata(arch, kwargs))
  else:
    variables = torch_cnn.convert(read_state_dict(in_path), arch, source, where=f"'{in_path}'")
  weights.save(out_path, variables, metadata)
  count = sum(x.size for x in jax.tree.leaves(variables))
  parts = " and ".join(sorted(variables["params"]))
  return f"Wrote {out_path}: {source}'s {arch}, {parts}, {count:,} numbers."


def _define_flags():
  """Only when run as a program: predict and benchmark define flags of the same names."""
  flags.DEFINE_string("arch", None, "Architecture: resnet18..152, convnext_tiny..large, vit_* "
                      "(segjax/models/vit.py).")
  flags.DEFINE_enum("source", "torchvision", list(dict.fromkeys(torch_cnn.SOURCES + torch_vit.SOURCES)),
                    "Whose naming the checkpoint uses: torchvision, timm; for a ViT timm, dinov2 (its own "
                    "checkpoints), dinov3 (Hugging Face's), eomt (Hugging Face's EomtForUniversalSegmentation), "
                    "siglip (big_vision's .npz).")
  flags.DEFINE_integer("patch", None, "A ViT's patch size to resample its patch embedding to (FlexiViT's "
                       "pseudo-inverse resize, as EoMT turns DINOv2's 14 into 16).")
  flags.DEFINE_list("grid", None, "A ViT's position-embedding grid to resize it to, as height,width "
                    "(the model resizes it to each input anyway; this makes it a parameter of that size).")
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
    grid = tuple(f.grid) if f.grid else None
    if grid is not None and (len(grid) != 2 or not all(x.strip().isdigit() and int(x) > 0 for x in grid)):
      raise UserError(f"--grid is {','.join(f.grid)}: give height,width in patches, e.g. 40,40.")
    grid = tuple(int(x) for x in grid) if grid else None
    print(convert_file(os.path.expanduser(f["in"].value), os.path.expanduser(f.out), f.arch, f.source,
                       f.patch, grid))
  except UserError as e:
    sys.exit(f"segjax.convert: error: {e}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
