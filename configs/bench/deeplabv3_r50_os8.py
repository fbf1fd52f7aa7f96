"""torchvision's deeplabv3_resnet50, for `python -m segjax.benchmark` against
shared/bench/peer_torchvision.py --model deeplabv3_resnet50 --batch 16 --size 512.

ResNet-50 dilated to output stride 8, ASPP rates 12/24/36 with 256 channels, a 3x3 256-channel
conv and a 1x1 classifier for 21 classes (Pascal VOC); 512x512 images, batch 16, bfloat16
compute with float32 parameters, SGD with momentum as in the peer script.
"""
from segjax.config import base_config


def get_config():
  c = base_config()
  c.dataset.num_classes = 21
  c.model.backbone = "resnet50"
  c.model.backbone_kwargs.output_stride = 8
  c.model.decoder = "deeplabv3plus"
  c.model.decoder_kwargs.rates = (12, 24, 36)
  c.model.decoder_kwargs.aspp_features = 256
  c.model.decoder_kwargs.decoder_features = 0  # plain DeepLabV3, as torchvision's
  c.model.dtype = "bfloat16"
  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.01
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "constant"
  c.batch_size = 16
  c.benchmark.image_size = 512
  return c
