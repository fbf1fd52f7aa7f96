"""The built-in run: seed conv net + seed head on the synthetic scenes, about 10 minutes on 2 CPU cores.

python -m segjax.main --config=configs/semantic.py --workdir=/tmp/semantic

Training crops are 160x160 (random scale 0.75-1.25 of the 256x256 scenes): on a CPU, smaller crops
buy more steps per minute, and a shape is still seen whole. Eval runs on the full 256x256 images.
"""
from segjax.config import base_config


def get_config():
  c = base_config()
  c.input.crop_size = (160, 160)
  c.optimizer.lr = 4e-3
  c.optimizer.warmup_steps = 50
  c.batch_size = 16
  c.total_steps = 1500
  c.log_every = 100
  c.eval_every = 375
  c.checkpoint_every = 375
  return c
