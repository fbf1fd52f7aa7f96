"""Mask2Former ResNet-50 on COCO panoptic 2017, after facebookresearch/Mask2Former's
configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml: batch 16, 368,750 steps (50
epochs), the rate x0.1 at steps 327,778 and 355,092 after 10 warm-up steps, frozen BatchNorm in the
backbone (detectron2's default), large-scale jitter: each image fitted into 1024x1024
(input.base_size), scaled 0.1-2.0x and cropped to 1024x1024; and the model, losses and optimizer of
segjax.recipes.mask_former_r50. Inference: Mask2Former's object-mask and overlap thresholds of 0.8,
each image resized to its test size, shorter side 800 and longer at most 1333 (eval.base_size), the
outputs resized back to the image before post-processing.

Target: PQ 51.9, mask AP 41.7 (things, from the panoptic model) and mIoU 61.7 on val2017
(Mask2Former, Cheng et al. CVPR 2022, Table 1 and its MODEL_ZOO.md, ResNet-50, 50 epochs). segjax's
FPN pixel decoder stands where Mask2Former's deformable-attention one is; expect fewer points.

Backbone: torchvision's ResNet50_Weights.IMAGENET1K_V1 converted once (README.md, "Pretrained
backbones"):
python -m segjax.convert --arch=resnet50 --in=resnet50-0676ba61.pth \
    --out=~/.cache/segjax/resnet50_imagenet1k_v1.safetensors

python -m segjax.main --config=configs/coco_panoptic/mask_former_r50.py --workdir=DIR \
    --config.dataset.manual_dir=/data/coco   # holds train2017/, val2017/ and annotations/
"""
from segjax.recipes import mask_former_r50, schedule


def get_config(variant=""):
  c = mask_former_r50("coco_panoptic", crop_size=(1024, 1024), scales=(0.1, 2.0), frozen_bn=True)
  c.input.base_size, c.eval.base_size = (1024, 1024), (1333, 800)  # LSJ's scale; ResizeShortestEdge(800, 1333)
  c.optimizer.schedule, c.optimizer.step_at, c.optimizer.warmup_steps = "step", (0.889, 0.963), 10
  return schedule(c, 368_750, batch_size=16, eval_batch_size=16, variant=variant)
