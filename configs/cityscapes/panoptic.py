"""Panoptic-DeepLab with a ResNet-50 at output stride 16 on Cityscapes fine, after detectron2's
projects/Panoptic-DeepLab panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml:
512x1024 crops of images scaled 0.5-2x, batch 32, 90k steps of Adam (lr 1e-3, no weight decay,
poly 0.9 after 1000 warm-up steps); losses: cross-entropy on the hardest 20% of pixels, centre MSE x
200, offset L1 x 0.01; centres as Gaussians of sigma 8 (deeplab2's; detectron2 keeps 10 here).

Target: PQ 60.3, mIoU 78.2, mask AP 33.2 on val, single scale (detectron2's projects/Panoptic-DeepLab/
README.md). That number starts from ImageNet weights (issue 10) on an R-52 (deep stem) with
multi-grid (1, 2, 4) dilation in the last stage, which segjax's ResNet-50 does not have.

python -m segjax.main --config=configs/cityscapes/panoptic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/cityscapes
"""
from segjax.config import base_config, tiny_variant


def get_config(variant=""):
  c = base_config()
  c.dataset.name = "cityscapes"
  c.model.backbone = "resnet50"
  c.model.backbone_kwargs.output_stride = 16
  c.model.semantic_head = "deeplabv3plus"
  c.model.semantic_head_kwargs.rates = (6, 12, 18)
  c.model.instance_head = "center_offset"
  c.model.instance_head_kwargs.hidden = 128
  c.model.dtype = "bfloat16"
  c.input.crop_size = (512, 1024)
  c.input.min_scale, c.input.max_scale = 0.5, 2.0
  c.loss.semantic_top_k = 0.2
  c.loss.center_weight = 200.0
  c.loss.offset_weight = 0.01
  c.loss.center_sigma = 8.0
  c.postprocess.center_threshold = 0.1
  c.postprocess.nms_kernel = 7
  c.postprocess.top_k = 200
  c.postprocess.min_stuff_area = 2048
  c.optimizer.name = "adamw"
  c.optimizer.lr = 1e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "poly"
  c.optimizer.warmup_steps = 1000
  c.batch_size = 32
  c.eval_batch_size = 8
  c.total_steps = 90_000
  c.log_every = 100
  c.eval_every = c.checkpoint_every = 9000
  return tiny_variant(c) if variant == "tiny" else c
