"""EoMT ViT-L on Cityscapes (19 classes) at 1024, after tue-mps/eomt's configs/dinov2/cityscapes/
semantic/eomt_large_1024.yaml: 100 queries, 107 epochs at batch 16 (19,902 steps, six times its
annealing period of 3,317), 1024x1024 crops of the 1024x2048 images scaled 0.25-1x (EoMT scales
0.5-2x the scale that fits the image in the crop), and the model, losses and optimizer of
segjax.recipes.eomt_vit_l (its docstring lists the deviations). Scored by mIoU of the semantic
inference on each 1024x2048 image whole (EoMT: two 1024x1024 windows).

Target: 84.2 mIoU on val at 25 FPS on an H100 (Kerssies et al. CVPR 2025, Table 4; tue-mps/eomt's
model_zoo/dinov2.md).

Backbone as configs/coco_panoptic/eomt_vit_l.py's.

python -m segjax.main --config=configs/cityscapes/eomt_vit_l.py --workdir=DIR \
    --config.dataset.manual_dir=/data/cityscapes   # holds leftImg8bit/ and gtFine/
"""
from segjax.recipes import eomt_vit_l, schedule


def get_config(variant=""):
  c = eomt_vit_l("cityscapes", crop_size=(1024, 1024), scales=(0.25, 1.0), queries=100, head="eomt_semantic")
  return schedule(c, 19_902, batch_size=16, eval_batch_size=8, variant=variant)
