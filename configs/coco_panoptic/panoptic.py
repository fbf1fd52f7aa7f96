"""Panoptic-DeepLab with a ResNet-50 at output stride 16 on COCO panoptic 2017, after detectron2's
projects/Panoptic-DeepLab panoptic_deeplab_R_52_os16_mg124_poly_200k_bs64_crop_640_640_coco_dsconv.yaml:
640x640 crops of images scaled 0.5-1.5x after their longer side is resized to 640 (input.base_size;
evaluated at that size too, as the config's test size), batch 64, 200k steps of Adam
(lr 5e-4, no weight decay, poly 0.9); cross-entropy on every pixel (top-k 1.0 in that config),
centre MSE x 200, offset L1 x 0.01, centre sigma 8.

Target: PQ 35.5 on val2017, single scale (detectron2's projects/Panoptic-DeepLab/README.md, which
uses depthwise-separable convolutions in the heads and an R-52 deep stem). Crowd regions are scored
as the COCO panoptic API scores them.

Backbone: torchvision's ResNet50_Weights.IMAGENET1K_V1, https://download.pytorch.org/models/
resnet50-0676ba61.pth, converted once (README.md, "Pretrained backbones"):
python -m segjax.convert --arch=resnet50 --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_imagenet1k_v1.safetensors

python -m segjax.main --config=configs/coco_panoptic/panoptic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/coco   # holds train2017/, val2017/ and annotations/
"""
from segjax.recipes import deeplabv3plus_r50, panoptic_deeplab, schedule


def get_config(variant=""):
  # 133 classes, 80 things: from the coco_panoptic descriptor.
  c = deeplabv3plus_r50("coco_panoptic", output_stride=16, rates=(6, 12, 18), crop_size=(640, 640),
                        scales=(0.5, 1.5))
  c.input.base_size = (640, 640)  # detectron2's MIN_SIZE_TEST = MAX_SIZE_TEST = 640
  c = panoptic_deeplab(c, lr=5e-4, semantic_top_k=1.0, min_stuff_area=4096)  # smaller stuff: void
  return schedule(c, 200_000, batch_size=64, eval_batch_size=16, variant=variant)
