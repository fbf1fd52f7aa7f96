"""Panoptic segmentation on the built-in scenes with Panoptic-DeepLab's head: the seed backbone
shared by a semantic decoder and a centre/offset instance decoder, fused into one panoptic map.
Scored with mIoU, COCO mask AP and PQ.

python -m segjax.main --config=configs/panoptic.py --workdir=/tmp/panoptic
"""
import os

from segjax.config import load_config_file, set_head


def get_config():
  c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "semantic.py"))
  set_head(c, "panoptic_deeplab")
  # The shared backbone must first learn the shapes (the class is the outline, never the colour).
  # Panoptic-DeepLab's centre weight of 200 outweighs the cross-entropy and delays that; at 20 the
  # centre term stays below it. The cross-entropy on each image's hardest 20% of pixels (also
  # Panoptic-DeepLab's) keeps the easy background from diluting the gradient of object pixels.
  # Measured at step 1200 of this recipe: mIoU 0.78 with weight 50 and all pixels, 0.92 with these.
  c.loss.center_weight = 20.0
  c.loss.semantic_top_k = 0.2
  c.total_steps = 1800
  c.eval_every = 600
  c.checkpoint_every = 600
  # PQ counts every false positive: keep only confident centres.
  c.postprocess.center_threshold = 0.1
  c.postprocess.top_k = 16
  return c
