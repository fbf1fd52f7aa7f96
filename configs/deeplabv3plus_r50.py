"""DeepLabV3+ on ResNet-50 at output stride 16 (ASPP rates 6/12/18), a GPU/TPU recipe.

python -m segjax.main --config=configs/deeplabv3plus_r50.py --workdir=/tmp/dlv3p
"""
from segjax.config import base_config


def get_config():
  c = base_config()
  c.model.backbone = "resnet50"
  c.model.backbone_kwargs.output_stride = 16
  c.model.decoder = "deeplabv3plus"
  c.model.decoder_kwargs.rates = (6, 12, 18)
  c.model.dtype = "bfloat16"
  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.02
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "poly"
  c.optimizer.warmup_steps = 200
  c.input.min_scale = 0.5
  c.input.max_scale = 2.0
  c.batch_size = 16
  c.total_steps = 10000
  c.eval_every = 1000
  c.checkpoint_every = 1000
  return c
