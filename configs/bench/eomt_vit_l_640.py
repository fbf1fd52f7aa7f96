"""EoMT ViT-L/16 at 640x640 for `python -m segjax.benchmark` (segjax.recipes.eomt_benchmark: COCO
panoptic's setting, 200 queries, the last 4 blocks masked, 12544 points per mask, Hungarian
matching of every prediction on device; inference includes the semantic and panoptic inference).
The paper reports 669 GFLOPs for ViT-L at 640 (Kerssies et al. CVPR 2025, Table 1).
"""
from segjax.recipes import eomt_benchmark


def get_config():
  return eomt_benchmark("large", blocks=4)
