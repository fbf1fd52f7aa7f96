"""DeepLabV3+ ResNet-50 at output stride 16 on the 133 classes of COCO panoptic 2017, with the
crops and schedule of configs/coco_panoptic/panoptic.py (640x640, longer side 640 then scale
0.5-1.5, evaluated at longer side 640, batch 64) and the
optimizer of the mmsegmentation DeepLabV3+ recipes (SGD lr 0.01, momentum 0.9, weight decay 5e-4,
poly 0.9), 80k steps.

Target: no DeepLabV3+ result on COCO panoptic's 133 classes is published; the nearest figure is the
semantic branch of Panoptic-DeepLab, 54.75 mIoU on val2017 (deeplab2's g3doc/projects/
panoptic_deeplab.md, ResNet-50 at output stride 32, from ImageNet weights).

Backbone: torchvision's ResNet50_Weights.IMAGENET1K_V1, https://download.pytorch.org/models/
resnet50-0676ba61.pth, converted once (README.md, "Pretrained backbones"):
python -m segjax.convert --arch=resnet50 --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_imagenet1k_v1.safetensors

python -m segjax.main --config=configs/coco_panoptic/semantic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/coco
"""
from segjax.recipes import deeplabv3plus_r50, schedule, sgd_poly


def get_config(variant=""):
  c = deeplabv3plus_r50("coco_panoptic", output_stride=16, rates=(6, 12, 18), crop_size=(640, 640),
                        scales=(0.5, 1.5))
  c.input.base_size = (640, 640)
  return schedule(sgd_poly(c), 80_000, batch_size=64, eval_batch_size=16, variant=variant)
