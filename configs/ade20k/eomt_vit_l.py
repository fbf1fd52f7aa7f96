"""EoMT ViT-L on ADE20K (150 classes) at 512, after tue-mps/eomt's configs/dinov2/ade20k/semantic/
eomt_large_512.yaml: 100 queries, 31 epochs at batch 16 (39,120 steps, six times its annealing
period of 6,520), 512x512 crops of images fitted into 512x512 (input.base_size) and scaled
0.5-2x, as EoMT's, and the model, losses and optimizer of segjax.recipes.eomt_vit_l (its docstring
lists the deviations). Scored by mIoU of the semantic inference (each class's probability summed
over queries, weighted by their masks), each image whole with its shorter side resized to 512
(eval.base_size; EoMT slides 512x512 windows along it), the logits resized back to the image.

Target: 58.4 mIoU on val at 92 FPS on an H100 (Kerssies et al. CVPR 2025, Table 3; tue-mps/eomt's
model_zoo/dinov2.md).

Backbone as configs/coco_panoptic/eomt_vit_l.py's.

python -m segjax.main --config=configs/ade20k/eomt_vit_l.py --workdir=DIR \
    --config.dataset.manual_dir=/data/ade   # holds ADEChallengeData2016/
"""
from segjax.recipes import eomt_vit_l, schedule


def get_config(variant=""):
  c = eomt_vit_l("ade20k", crop_size=(512, 512), scales=(0.5, 2.0), queries=100, head="eomt_semantic",
                 base_size=(512, 512))
  c.eval.base_size = (2048, 512)
  return schedule(c, 39_120, batch_size=16, eval_batch_size=8, variant=variant)
