"""EoMT ViT-S/16 at 640x640 for `python -m segjax.benchmark` (COCO panoptic's setting: 200 queries,
the last 3 blocks masked, 12544 points per mask, Hungarian matching of every prediction on device;
inference includes the semantic and panoptic inference). Batch 16 in training, bfloat16 compute,
COCO-sized label set (133 classes, 80 things).
"""
from segjax.recipes import eomt_vit_l


def get_config():
  c = eomt_vit_l("synthetic_scenes", crop_size=(640, 640), scales=(1.0, 1.0), queries=200)
  c.model.backbone = "vit_small_patch14_reg4_dinov2"
  c.model.decoder_kwargs.blocks = 3  # EoMT's L for ViT-S and ViT-B
  c.model.init_from.path = None  # the benchmark times random weights
  c.dataset.num_classes = 133
  c.dataset.thing_classes = tuple(range(80))
  c.loss.max_segments = 100
  c.batch_size = 16
  c.total_steps = 88_692  # COCO's schedule (configs/coco_panoptic/eomt_vit_l.py), past the warm-ups
  c.benchmark.image_size = 640
  return c
