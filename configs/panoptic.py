"""Panoptic segmentation on the built-in scenes: the seed backbone shared by a semantic head and a
centre/offset instance head (Panoptic-DeepLab), fused into one panoptic map. Scored with mIoU,
COCO mask AP and PQ.

python -m segjax.main --config=configs/panoptic.py --workdir=/tmp/panoptic
"""
import os

from segjax.config import load_config_file


def get_config():
  c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "semantic.py"))
  c.model.instance_head = "center_offset"
  # Panoptic-DeepLab's centre weight of 200 outweighs the cross-entropy here and delays learning
  # the shapes, which the shared backbone needs for both heads; 50 keeps the two comparable.
  c.loss.center_weight = 50.0
  c.total_steps = 1800
  c.eval_every = 600
  c.checkpoint_every = 600
  # PQ counts every false positive: keep only confident centres.
  c.postprocess.center_threshold = 0.1
  c.postprocess.top_k = 16
  return c
