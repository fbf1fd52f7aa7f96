"""DeepLabV3+ ResNet-50 at output stride 8 on Pascal VOC 2012 (21 classes, the 255 border
ignored), after mmsegmentation's deeplabv3plus_r50-d8_4xb4-40k_voc12aug-512x512.py: 512x512 crops of
images scaled 0.5-2x, batch 16, 40k steps of SGD (lr 0.01, momentum 0.9, weight decay 5e-4, poly 0.9).

Target: 76.81 mIoU on val, single scale (mmsegmentation's configs/deeplabv3plus/README.md). That
number trains on VOC train + the SBD-augmented set (10,582 images) from ImageNet weights (issue 10);
segjax reads the official VOC 2012 segmentation files, whose train list has 1,464 images, so expect
less until SBD is added.

python -m segjax.main --config=configs/pascal_voc/semantic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/voc   # holds VOCdevkit/VOC2012/
"""
from segjax.config import base_config, tiny_variant


def get_config(variant=""):
  c = base_config()
  c.dataset.name = "pascal_voc"
  c.model.backbone = "resnet50"
  c.model.backbone_kwargs.output_stride = 8
  c.model.semantic_head = "deeplabv3plus"
  c.model.semantic_head_kwargs.rates = (12, 24, 36)
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
  c.total_steps = 40_000
  c.log_every = 100
  c.eval_every = c.checkpoint_every = 4000
  return tiny_variant(c) if variant == "tiny" else c
