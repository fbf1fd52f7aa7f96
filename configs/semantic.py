"""The built-in run: seed conv net + seed head on the synthetic scenes, about 10 minutes on 2 CPU cores.

python -m segjax.main --config=configs/semantic.py --workdir=/tmp/semantic
"""
from segjax.config import base_config


def get_config():
  c = base_config()
  c.optimizer.lr = 3e-3
  c.optimizer.warmup_steps = 50
  c.batch_size = 16
  c.total_steps = 600
  c.eval_every = 200
  c.checkpoint_every = 200
  return c
