"""DeepLabV3+ ResNet-50 at output stride 8 on Pascal VOC 2012 (21 classes, the 255 border ignored),
after mmsegmentation's deeplabv3plus_r50-d8_4xb4-40k_voc12aug-512x512.py: 512x512 crops of images
fitted into 2048x512 (input.base_size, in eval too) and scaled 0.5-2x, batch 16, 40k steps of SGD
(lr 0.01, momentum 0.9, weight decay 5e-4, poly 0.9).
Target: 76.81 mIoU on val, single scale (mmsegmentation's configs/deeplabv3plus/README.md). That
number trains on VOC train + the SBD-augmented set (10,582 images) from ImageNet weights;
segjax reads the official VOC 2012 segmentation files, whose train list has 1,464 images, so expect
less until SBD is added.

Backbone: torchvision's ResNet50_Weights.IMAGENET1K_V1, https://download.pytorch.org/models/
resnet50-0676ba61.pth, converted once (README.md, "Pretrained backbones"):
python -m segjax.convert --arch=resnet50 --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_imagenet1k_v1.safetensors

python -m segjax.main --config=configs/pascal_voc/semantic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/voc   # holds VOCdevkit/VOC2012/
"""
from segjax.recipes import deeplabv3plus_r50, schedule, sgd_poly


def get_config(variant=""):
  c = deeplabv3plus_r50("pascal_voc", output_stride=8, rates=(12, 24, 36), crop_size=(512, 512),
                        scales=(0.5, 2.0))
  c.input.base_size = (2048, 512)  # mmsegmentation's RandomResize and Resize scale, keep_ratio=True
  return schedule(sgd_poly(c), 40_000, batch_size=16, eval_batch_size=16, variant=variant)
