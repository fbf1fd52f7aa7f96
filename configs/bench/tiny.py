"""A seconds-long CPU smoke run of the benchmark: the seed model on 64x64 images, batch 8."""
from segjax.config import base_config


def get_config():
  c = base_config("panoptic_deeplab")
  c.dataset.num_classes = 4
  c.dataset.thing_classes = (1, 2, 3)
  c.model.backbone_kwargs.widths = (8, 8, 16, 16, 32)
  c.model.backbone_kwargs.features = 16
  c.model.decoder_kwargs.hidden = 16
  c.model.instance_decoder_kwargs.hidden = 16
  c.model.instance_decoder_kwargs.branch = 8
  c.postprocess.nms_kernel = 3
  c.batch_size = 8
  c.benchmark.image_size = 64
  c.benchmark.warmup_steps = 2
  c.benchmark.steps = 3
  return c
