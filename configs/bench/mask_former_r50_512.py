"""The query head at 512x512 for `python -m segjax.benchmark`: Mask2Former's R50 model (ResNet-50
at stride 32, FPN pixel decoder, 100 queries, 9 masked-attention decoder layers) with its losses:
Hungarian matching of every layer's predictions on device, 12544 uncertainty-sampled points per
mask; inference includes the semantic and panoptic inference. Batch 16, bfloat16 compute; the
label set is Cityscapes-sized, as configs/bench/panoptic_r50_os16.py's.
"""
from segjax.recipes import mask_former_r50


def get_config():
  c = mask_former_r50("synthetic_scenes", crop_size=(512, 512), scales=(1.0, 1.0), frozen_bn=False)
  c.model.init_from.path = None  # the benchmark times random weights
  c.dataset.num_classes = 19
  c.dataset.thing_classes = tuple(range(11, 19))
  c.loss.max_segments = 50
  c.batch_size = 16
  c.benchmark.image_size = 512
  return c
