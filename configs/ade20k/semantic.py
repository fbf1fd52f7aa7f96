"""DeepLabV3+ ResNet-50 at output stride 8 on ADE20K (SceneParsing, 150 classes), after
mmsegmentation's deeplabv3plus_r50-d8_4xb4-160k_ade20k-512x512.py: 512x512 crops of images scaled
0.5-2x, batch 16, 160k steps of SGD (lr 0.01, momentum 0.9, weight decay 5e-4, poly 0.9), ASPP rates
12/24/36. Label 0 ("other") is ignored and the 150 classes shift down by one (the descriptor).

Target: 43.95 mIoU on val, single scale (mmsegmentation's configs/deeplabv3plus/README.md; 44.93
with multi-scale + flip; 42.72 after 80k steps). That number starts from ImageNet weights
on a V1c ResNet with an auxiliary head. As mmsegmentation's, each image is first resized to fit
2048x512 (input.base_size), in training before the random scale and in eval before inference, its
logits resized back to the image and scored there; eval batches images of like sizes together.

Multi-scale + flip, as mmsegmentation scores it, on the trained run:
python -m segjax.main --config=configs/ade20k/semantic.py --workdir=DIR --eval_only --config.eval.flip=True \
    --config.eval.scales='(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)'

Backbone: torchvision's ResNet50_Weights.IMAGENET1K_V1, https://download.pytorch.org/models/
resnet50-0676ba61.pth, converted once (README.md, "Pretrained backbones"):
python -m segjax.convert --arch=resnet50 --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_imagenet1k_v1.safetensors

python -m segjax.main --config=configs/ade20k/semantic.py --workdir=DIR \
    --config.dataset.manual_dir=/data/ade   # holds ADEChallengeData2016/
"""
from segjax.recipes import deeplabv3plus_r50, schedule, sgd_poly


def get_config(variant=""):
  c = deeplabv3plus_r50("ade20k", output_stride=8, rates=(12, 24, 36), crop_size=(512, 512),
                        scales=(0.5, 2.0))
  c.input.base_size = (2048, 512)  # mmsegmentation's RandomResize and Resize scale, keep_ratio=True
  return schedule(sgd_poly(c), 160_000, batch_size=16, eval_batch_size=8, variant=variant)
