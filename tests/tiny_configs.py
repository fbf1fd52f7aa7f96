"""Tiny configs for tests, in a module of their own so that config files for subprocesses can import
them without conftest's environment settings."""
from segjax.config import base_config


def tiny_config(data_dir, head="semantic", **overrides):
  """A config of `head` that trains a few-thousand-parameter model on 64x64 scenes in seconds."""
  c = base_config(head)
  c.dataset.name = "synthetic_scenes/tiny"
  c.dataset.data_dir = data_dir
  # What segjax.data.resolve takes from the dataset's descriptor, repeated (which a config may do)
  # so that tests can build models and steps without resolving.
  c.dataset.num_classes = 4
  c.dataset.thing_classes = (1, 2, 3)
  c.dataset.ignore_label = 255
  c.dataset.label_divisor = 1000
  c.dataset.label_ids = (0, 1, 2, 3)
  c.input.crop_size = (48, 48)
  c.input.eval_size = (64, 64)
  c.model.backbone_kwargs.widths = (4, 8, 8, 16, 16)
  c.model.backbone_kwargs.depths = (1, 1, 1)
  c.model.backbone_kwargs.features = 16
  if c.model.get("decoder") == "seed":
    c.model.decoder_kwargs.hidden = 8
    c.model.decoder_kwargs.refine = 4
  c.optimizer.lr = 1e-2
  c.optimizer.schedule = "constant"
  c.batch_size = 8
  c.eval_batch_size = 8
  c.total_steps = 8
  c.log_every = 1
  c.eval_every = 4
  c.checkpoint_every = 4
  c.num_summary_images = 2
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c


def tiny_panoptic_config(data_dir, **overrides):
  """tiny_config of Panoptic-DeepLab, its instance decoder small and its targets sized for 64x64 scenes."""
  settings = {"loss.center_sigma": 2.0, "postprocess.nms_kernel": 3, "postprocess.min_stuff_area": 4}
  c = tiny_config(data_dir, "panoptic_deeplab", **{**settings, **overrides})
  c.model.instance_decoder_kwargs.hidden = 8
  c.model.instance_decoder_kwargs.branch = 4
  return c
