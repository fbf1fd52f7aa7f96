"""DeepLabV3+ ResNet-50 at output stride 8 on Cityscapes fine, after mmsegmentation's
deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py: 512x1024 crops of images scaled 0.5-2x and
flipped, batch 8, 80k steps of SGD (lr 0.01, momentum 0.9, weight decay 5e-4, poly 0.9), ASPP
rates 12/24/36. Eval on the whole 1024x2048 images.

Target: 80.09 mIoU on val, single scale (mmsegmentation's configs/deeplabv3plus/README.md; 81.13 with
multi-scale + flip). That number starts from ImageNet weights (issue 10) and uses a V1c (deep stem)
ResNet, an auxiliary FCN head and photometric distortion, which segjax does not have yet.

python -m segjax.main --config=configs/cityscapes/semantic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/cityscapes   # holds leftImg8bit/ and gtFine/
"""
from segjax.config import base_config, tiny_variant


def get_config(variant=""):
  c = base_config()
  c.dataset.name = "cityscapes"  # 19 classes, 8 things, 1024x2048 eval: from its descriptor
  c.model.backbone = "resnet50"
  c.model.backbone_kwargs.output_stride = 8
  c.model.semantic_head = "deeplabv3plus"
  c.model.semantic_head_kwargs.rates = (12, 24, 36)
  c.model.dtype = "bfloat16"
  c.input.crop_size = (512, 1024)
  c.input.min_scale, c.input.max_scale = 0.5, 2.0
  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.01
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "poly"
  c.optimizer.poly_power = 0.9
  c.batch_size = 8
  c.eval_batch_size = 8
  c.total_steps = 80_000
  c.log_every = 100
  c.eval_every = c.checkpoint_every = 8000
  return tiny_variant(c) if variant == "tiny" else c
