"""The panoptic model at 512x512 for `python -m segjax.benchmark`: ResNet-50 at output stride 16,
a DeepLabV3+ semantic decoder and the centre/offset instance decoder on the shared features; inference
includes the in-jit instance grouping and panoptic fusion. Batch 16, bfloat16 compute.
"""
from segjax.config import base_config


def get_config():
  c = base_config("panoptic_deeplab")
  c.dataset.num_classes = 19  # Cityscapes-sized label set
  c.dataset.thing_classes = tuple(range(11, 19))
  c.model.backbone = "resnet50"
  c.model.backbone_kwargs.output_stride = 16
  c.model.decoder = "deeplabv3plus"
  c.model.decoder_kwargs.rates = (6, 12, 18)
  c.model.instance_decoder_kwargs.hidden = 128
  c.model.dtype = "bfloat16"
  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.01
  c.optimizer.schedule = "constant"
  c.postprocess.top_k = 64
  c.batch_size = 16
  c.benchmark.image_size = 512
  return c
