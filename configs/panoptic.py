"""Panoptic segmentation on the built-in scenes: the seed backbone shared by a semantic head and a
centre/offset instance head (Panoptic-DeepLab), fused into one panoptic map. Scored with mIoU,
COCO mask AP and PQ.

python -m segjax.main --config=configs/panoptic.py --workdir=/tmp/panoptic
"""
from segjax.config import base_config


def get_config():
  c = base_config()
  c.model.instance_head = "center_offset"
  # Panoptic-DeepLab's centre weight of 200 outweighs the cross-entropy here and delays learning
  # the shapes, which the shared backbone needs for both heads; 50 keeps the two comparable.
  c.loss.center_weight = 50.0
  c.input.crop_size = 160
  c.optimizer.lr = 4e-3
  c.optimizer.warmup_steps = 50
  c.batch_size = 16
  c.total_steps = 1800
  c.log_every = 100
  c.eval_every = 600
  c.checkpoint_every = 600
  # PQ counts every false positive: keep only confident centres.
  c.postprocess.center_threshold = 0.1
  c.postprocess.top_k = 16
  return c
