"""Mask2Former ResNet-50 on Cityscapes panoptic (fine), after facebookresearch/Mask2Former's
configs/cityscapes/panoptic-segmentation/maskformer2_R50_bs16_90k.yaml: batch 16, 90,000 steps of
poly (0.9) decay with no warm-up, BatchNorm trained with statistics over the whole batch (SyncBN
there), 512x1024 crops of images scaled 0.5-2.0x, and the model, losses and optimizer of
segjax.recipes.mask_former_r50. Inference at the full 1024x2048, object-mask and overlap thresholds
0.8.

Target: PQ 62.1, mask AP 37.3 and mIoU 77.5 on val (Mask2Former, Cheng et al. CVPR 2022, Table 4
and its MODEL_ZOO.md, ResNet-50). segjax's FPN pixel decoder stands where Mask2Former's
deformable-attention one is; expect fewer points.

Backbone: torchvision's ResNet50_Weights.IMAGENET1K_V1 converted once (README.md, "Pretrained
backbones").

python -m segjax.main --config=configs/cityscapes/mask_former_r50.py --workdir=DIR \
    --config.dataset.manual_dir=/data/cityscapes   # holds leftImg8bit/ and gtFine/
"""
from segjax.recipes import mask_former_r50, schedule


def get_config(variant=""):
  c = mask_former_r50("cityscapes", crop_size=(512, 1024), scales=(0.5, 2.0), frozen_bn=False)
  c.optimizer.schedule, c.optimizer.warmup_steps = "poly", 0
  return schedule(c, 90_000, batch_size=16, eval_batch_size=8, variant=variant)
