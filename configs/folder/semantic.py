"""DeepLabV3+ ResNet-50 at output stride 16 on your own folder of images and label PNGs (layout in
README.md, "Your own data"): the settings of configs/pascal_voc/semantic.py (512x512 crops, scale
0.5-2x, SGD lr 0.01, poly) for 20k steps at batch 16. Classes, things and the ignore label come from
the folder's classes.json. Add `--config.model.instance_head=center_offset` when the folder has
instance/ PNGs.

python -m segjax.main --config=configs/folder/semantic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/mine --config.dataset.data_dir=/data/mine_tfds
"""
from segjax.config import base_config, tiny_variant


def get_config(variant=""):
  c = base_config()
  c.dataset.name = "folder"
  c.model.backbone = "resnet50"
  c.model.backbone_kwargs.output_stride = 16
  c.model.semantic_head = "deeplabv3plus"
  c.model.semantic_head_kwargs.rates = (6, 12, 18)
  c.model.dtype = "bfloat16"
  c.input.crop_size = (512, 512)
  c.input.min_scale, c.input.max_scale = 0.5, 2.0
  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.01
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "poly"
  c.batch_size = 16
  c.eval_batch_size = 16
  c.total_steps = 20_000
  c.log_every = 100
  c.eval_every = c.checkpoint_every = 2000
  return tiny_variant(c) if variant == "tiny" else c
