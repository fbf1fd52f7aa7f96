"""Instance segmentation on the built-in scenes: the panoptic model, post-processed for COCO mask AP.

AP rewards ranking every plausible instance, so more and weaker centres are kept than for PQ.

python -m segjax.main --config=configs/instance.py --workdir=/tmp/instance
"""
import os

from segjax.config import load_config_file


def get_config():
  c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "panoptic.py"))
  c.postprocess.center_threshold = 0.03
  c.postprocess.top_k = 32
  return c
