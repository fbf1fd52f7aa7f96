"""DeepLabV3+ ResNet-50 at output stride 16 on your own folder of images and label PNGs (layout in
README.md, "Your own data"): the settings of configs/pascal_voc/semantic.py (512x512 crops, scale
0.5-2x, SGD lr 0.01, poly) for 20k steps at batch 16. Classes, things and the ignore label come from
the folder's classes.json. With instance/ PNGs, configs/folder/panoptic.py adds Panoptic-DeepLab's
instance decoder.

Backbone: torchvision's ResNet50_Weights.IMAGENET1K_V1, https://download.pytorch.org/models/
resnet50-0676ba61.pth, converted once (README.md, "Pretrained backbones"):
python -m segjax.convert --arch=resnet50 --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_imagenet1k_v1.safetensors

python -m segjax.main --config=configs/folder/semantic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/mine --config.dataset.data_dir=/data/mine_tfds
"""
from segjax.recipes import deeplabv3plus_r50, schedule, sgd_poly


def get_config(variant=""):
  c = deeplabv3plus_r50("folder", output_stride=16, rates=(6, 12, 18), crop_size=(512, 512),
                        scales=(0.5, 2.0))
  return schedule(sgd_poly(c), 20_000, batch_size=16, eval_batch_size=16, variant=variant)
