"""Instance segmentation on the built-in scenes: the panoptic model, post-processed for COCO mask AP.

AP rewards ranking every plausible instance, so more and weaker centres are kept than for PQ.

python -m segjax.main --config=configs/instance.py --workdir=/tmp/instance
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
  c.postprocess.center_threshold = 0.03
  c.postprocess.top_k = 32
  return c
