"""EoMT ViT-S/16 at 640x640 for `python -m segjax.benchmark` (segjax.recipes.eomt_benchmark: COCO
panoptic's setting, 200 queries, the last 3 blocks masked, 12544 points per mask, Hungarian
matching of every prediction on device; inference includes the semantic and panoptic inference).
"""
from segjax.recipes import eomt_benchmark


def get_config():
  return eomt_benchmark("small", blocks=3)
