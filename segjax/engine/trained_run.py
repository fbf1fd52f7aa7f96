"""A trained run, read back from its workdir for inference: its config, its model and the
variables of its latest checkpoint (parameters and BatchNorm statistics alone, no optimizer state)."""
import json
import os
from typing import Any, NamedTuple

from absl import logging
import jax
import ml_collections
import numpy as np

from segjax import heads
from segjax.config import base_config
from segjax.engine.checkpoint import Checkpointer
from segjax.errors import UserError
from segjax.head_keys import upgraded


class TrainedRun(NamedTuple):
  config: ml_collections.ConfigDict
  model: Any
  variables: dict  # params and batch_stats
  step: int  # of the checkpoint they were read from


def load(workdir):
  """The run in `workdir` at its newest complete checkpoint: its parameters and BatchNorm
  statistics alone, no optimizer state. Nothing in `workdir` is written, so it may be training."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise UserError(f"No config.json in '{workdir}'; pass the --workdir of a segjax.main run.")
  with open(config_path) as f:
    saved, moved = upgraded(json.load(f))
  if moved:
    logging.warning("'%s': %s", workdir, moved)
  config = ml_collections.ConfigDict(saved)
  if (not isinstance(config.input.crop_size, (list, tuple)) or config.dataset.get("label_divisor") is None
      or "init_from" not in config.model):
    raise UserError(f"'{workdir}' was trained by an older segjax (its config.json lacks keys this "
                    "version reads, and its variables are named otherwise); train it again with this "
                    "version.")
  if "eval" not in config:  # trained before there were protocols: infer on the whole image
    config.eval = base_config().eval
  try:
    heads.get(config)
  except ValueError as e:
    raise UserError(f"'{workdir}' was trained with head '{config.model.head}', which segjax.heads does not "
                    f"have here (it has {', '.join(sorted(heads.HEADS))}): add it to HEADS "
                    "(segjax/heads/__init__.py), or register it (segjax.heads.register) before reading the run.") from e
  model = heads.build_segmenter(config.model, config.dataset.num_classes)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32)))
  like = {k: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes[k])
          for k in ("params", "batch_stats") if shapes.get(k)}
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)  # its run may be saving
  try:
    found = ckpt.restore_newest_variables(like)
  finally:
    ckpt.close()
  if found is None:
    raise UserError(f"No checkpoint in '{ckpt.directory}'; train first with "
                    f"python -m segjax.main --workdir={workdir}.")
  step, variables = found
  return TrainedRun(config, model, {"batch_stats": {}, **variables}, step)


def class_names(workdir):
  """The run's class names (class_names.json, written when it trained), or None."""
  path = os.path.join(workdir, "class_names.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)
