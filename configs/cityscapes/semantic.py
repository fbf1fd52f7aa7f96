"""DeepLabV3+ ResNet-50 at output stride 8 on Cityscapes fine, after mmsegmentation's
deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py: 512x1024 crops of images scaled 0.5-2x and
flipped, batch 8, 80k steps of SGD (lr 0.01, momentum 0.9, weight decay 5e-4, poly 0.9), ASPP
rates 12/24/36. Eval on the whole 1024x2048 images.

Target: 80.09 mIoU on val, single scale (mmsegmentation's configs/deeplabv3plus/README.md; 81.13 with
multi-scale + flip). That number starts from ImageNet weights on a V1c (deep stem) ResNet with an
auxiliary FCN head and photometric distortion, which segjax does not have yet.

Multi-scale + flip, as mmsegmentation scores it, on the trained run:
python -m segjax.main --config=configs/cityscapes/semantic.py --workdir=DIR --eval_only --config.eval.flip=True \
    --config.eval.scales='(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)'

Backbone: torchvision's ResNet50_Weights.IMAGENET1K_V1, https://download.pytorch.org/models/
resnet50-0676ba61.pth, converted once (README.md, "Pretrained backbones"):
python -m segjax.convert --arch=resnet50 --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_imagenet1k_v1.safetensors

python -m segjax.main --config=configs/cityscapes/semantic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/cityscapes   # holds leftImg8bit/ and gtFine/
"""
from segjax.recipes import deeplabv3plus_r50, schedule, sgd_poly


def get_config(variant=""):
  # 19 classes, 8 things, 1024x2048 eval: from the cityscapes descriptor.
  c = deeplabv3plus_r50("cityscapes", output_stride=8, rates=(12, 24, 36), crop_size=(512, 1024),
                        scales=(0.5, 2.0))
  return schedule(sgd_poly(c), 80_000, batch_size=8, eval_batch_size=8, variant=variant)
