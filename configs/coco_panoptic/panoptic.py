"""Panoptic-DeepLab with a ResNet-50 at output stride 16 on COCO panoptic 2017, after detectron2's
projects/Panoptic-DeepLab panoptic_deeplab_R_52_os16_mg124_poly_200k_bs64_crop_640_640_coco_dsconv.yaml:
640x640 crops of images scaled 0.5-1.5x (COCO's longer side is 640), batch 64, 200k steps of Adam
(lr 5e-4, no weight decay, poly 0.9); cross-entropy on every pixel (top-k 1.0 in that config),
centre MSE x 200, offset L1 x 0.01, centre sigma 8.

Target: PQ 35.5 on val2017, single scale (detectron2's projects/Panoptic-DeepLab/README.md, which
uses depthwise-separable convolutions in the heads, an R-52 deep stem and ImageNet weights: issue
10). Crowd regions are scored as the COCO panoptic API scores them.

python -m segjax.main --config=configs/coco_panoptic/panoptic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/coco   # holds train2017/, val2017/ and annotations/
"""
from segjax.config import base_config, tiny_variant


def get_config(variant=""):
  c = base_config()
  c.dataset.name = "coco_panoptic"  # 133 classes, 80 things: from its descriptor
  c.model.backbone = "resnet50"
  c.model.backbone_kwargs.output_stride = 16
  c.model.semantic_head = "deeplabv3plus"
  c.model.semantic_head_kwargs.rates = (6, 12, 18)
  c.model.instance_head = "center_offset"
  c.model.instance_head_kwargs.hidden = 128
  c.model.dtype = "bfloat16"
  c.input.crop_size = (640, 640)
  c.input.min_scale, c.input.max_scale = 0.5, 1.5
  c.loss.semantic_top_k = 1.0
  c.loss.center_weight = 200.0
  c.loss.offset_weight = 0.01
  c.loss.center_sigma = 8.0
  c.postprocess.center_threshold = 0.1
  c.postprocess.nms_kernel = 7
  c.postprocess.top_k = 200
  c.postprocess.min_stuff_area = 4096  # smaller stuff segments become void
  c.optimizer.name = "adamw"
  c.optimizer.lr = 5e-4
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "poly"
  c.optimizer.warmup_steps = 1000
  c.batch_size = 64
  c.eval_batch_size = 16
  c.total_steps = 200_000
  c.log_every = 100
  c.eval_every = c.checkpoint_every = 20_000
  return tiny_variant(c) if variant == "tiny" else c
