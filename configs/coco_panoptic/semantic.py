"""DeepLabV3+ ResNet-50 at output stride 16 on the 133 classes of COCO panoptic 2017, with the
crops and schedule of configs/coco_panoptic/panoptic.py (640x640, scale 0.5-1.5, batch 64) and the
optimizer of the mmsegmentation DeepLabV3+ recipes (SGD lr 0.01, momentum 0.9, weight decay 5e-4,
poly 0.9), 80k steps.

Target: no DeepLabV3+ result on COCO panoptic's 133 classes is published; the nearest figure is the
semantic branch of Panoptic-DeepLab, 54.75 mIoU on val2017 (deeplab2's g3doc/projects/
panoptic_deeplab.md, ResNet-50 at output stride 32, ImageNet weights: issue 10).

python -m segjax.main --config=configs/coco_panoptic/semantic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/coco
"""
from segjax.config import base_config, tiny_variant


def get_config(variant=""):
  c = base_config()
  c.dataset.name = "coco_panoptic"
  c.model.backbone = "resnet50"
  c.model.backbone_kwargs.output_stride = 16
  c.model.semantic_head = "deeplabv3plus"
  c.model.semantic_head_kwargs.rates = (6, 12, 18)
  c.model.dtype = "bfloat16"
  c.input.crop_size = (640, 640)
  c.input.min_scale, c.input.max_scale = 0.5, 1.5
  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.01
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "poly"
  c.batch_size = 64
  c.eval_batch_size = 16
  c.total_steps = 80_000
  c.log_every = 100
  c.eval_every = c.checkpoint_every = 8000
  return tiny_variant(c) if variant == "tiny" else c
