"""EoMT ViT-L on COCO panoptic 2017 at 640, after tue-mps/eomt's configs/dinov2/coco/panoptic/
eomt_large_640.yaml: 200 queries, 12 epochs at batch 16 (88,692 steps, the total its annealing
steps are sixths of), images fitted into 640x640 (input.base_size), scaled 0.1-2x and cropped to
640x640, and the model, losses and optimizer of segjax.recipes.eomt_vit_l (its docstring lists the
deviations). Inference: EoMT's object-mask and overlap thresholds of 0.8, each image whole with its
longer side resized to 640, as EoMT's, the outputs resized back to the image.

Target: PQ 56.0 on val2017 at 128 FPS on an H100 (Kerssies et al. CVPR 2025, Table 1, and
tue-mps/eomt's model_zoo/dinov2.md; 4.4x the FPS of ViT-Adapter + Mask2Former at 57.1).

Backbone: timm's vit_large_patch14_reg4_dinov2.lvd142m, converted once to patch 16 (README.md,
"ViT backbones and EoMT"):
python -m segjax.convert --arch=vit_large_patch14_reg4_dinov2 --source=timm --patch=16 \
    --in=model.safetensors --out=~/.cache/segjax/dinov2_vitl14_reg4_patch16.safetensors

python -m segjax.main --config=configs/coco_panoptic/eomt_vit_l.py --workdir=DIR \
    --config.dataset.manual_dir=/data/coco   # holds train2017/, val2017/ and annotations/
"""
from segjax.recipes import eomt_vit_l, schedule


def get_config(variant=""):
  c = eomt_vit_l("coco_panoptic", crop_size=(640, 640), scales=(0.1, 2.0), queries=200, base_size=(640, 640))
  return schedule(c, 88_692, batch_size=16, eval_batch_size=16, variant=variant)
