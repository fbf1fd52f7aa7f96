"""A control for the built-in dataset: the semantic run with a model that sees one pixel at a time.

1x1 convolutions only, so it can use colour but never shape. The synthetic scenes draw every
object's colour at random, so this model should find objects but not their classes: its mIoU shows
how much of the built-in run's score shape alone explains.

python -m segjax.main --config=configs/pixel_control.py --workdir=/tmp/pixel_control
"""
import os

from segjax.config import load_config_file


def get_config():
  c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "semantic.py"))
  c.model.backbone = "pixel"
  c.model.backbone_kwargs.width = 32
  c.model.backbone_kwargs.features = 32
  c.model.decoder_kwargs.hidden = 32
  c.total_steps = 400
  c.log_every = 50
  c.eval_every = 200
  c.checkpoint_every = 200
  return c
