"""configs/folder/semantic.py with Panoptic-DeepLab's instance decoder (its default settings), for a
folder with instance/ PNGs (README.md, "Your own data"): scored with mIoU, COCO mask AP and PQ.

python -m segjax.main --config=configs/folder/panoptic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/mine --config.dataset.data_dir=/data/mine_tfds
"""
import os

from segjax.config import load_config_file, set_head
from segjax.recipes import tiny_variant


def get_config(variant=""):
  c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "semantic.py"))
  set_head(c, "panoptic_deeplab")
  return tiny_variant(c) if variant == "tiny" else c
