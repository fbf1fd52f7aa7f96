"""Panoptic-DeepLab with a ResNet-50 at output stride 16 on Cityscapes fine, after detectron2's
projects/Panoptic-DeepLab panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml:
512x1024 crops of images scaled 0.5-2x, batch 32, 90k steps of Adam (lr 1e-3, no weight decay,
poly 0.9 after 1000 warm-up steps); losses: cross-entropy on the hardest 20% of pixels, centre MSE x
200, offset L1 x 0.01; centres as Gaussians of sigma 8 (deeplab2's; detectron2 keeps 10 here).

Target: PQ 60.3, mIoU 78.2, mask AP 33.2 on val, single scale (detectron2's projects/Panoptic-DeepLab/
README.md). That number starts from ImageNet weights on an R-52 (deep stem) with multi-grid
(1, 2, 4) dilation in the last stage; segjax's ResNet-50 has the basic stem and neither.

Backbone: torchvision's ResNet50_Weights.IMAGENET1K_V1, https://download.pytorch.org/models/
resnet50-0676ba61.pth, converted once (README.md, "Pretrained backbones"):
python -m segjax.convert --arch=resnet50 --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_imagenet1k_v1.safetensors

python -m segjax.main --config=configs/cityscapes/panoptic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/cityscapes
"""
from segjax.recipes import deeplabv3plus_r50, panoptic_deeplab, schedule


def get_config(variant=""):
  c = deeplabv3plus_r50("cityscapes", output_stride=16, rates=(6, 12, 18), crop_size=(512, 1024),
                        scales=(0.5, 2.0))
  c = panoptic_deeplab(c, lr=1e-3, semantic_top_k=0.2, min_stuff_area=2048)
  return schedule(c, 90_000, batch_size=32, eval_batch_size=8, variant=variant)
