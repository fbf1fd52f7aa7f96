"""Writes what a run measured: JSON lines in WORKDIR/metrics.jsonl and TensorBoard event files."""
import json
import os

import jax
import numpy as np
from tensorboardX import SummaryWriter


class MetricsWriter:
  """Appends one JSON line per record and mirrors scalars and images to TensorBoard.

  Only process 0 writes, so a multi-host run produces one file, not one per host.
  """

  def __init__(self, workdir):
    self._active = jax.process_index() == 0
    if self._active:
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step, kind, scalars, extra=None):
    if not self._active:
      return
    record = {"step": int(step), "kind": kind, **{k: float(v) for k, v in scalars.items()}, **(extra or {})}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tb.add_scalar(f"{kind}/{name}", float(value), int(step))

  def images(self, step, name, images):
    """images: (N, H, W, 3) uint8."""
    if self._active:
      self._tb.add_images(name, np.asarray(images), int(step), dataformats="NHWC")

  def close(self):
    if self._active:
      self._jsonl.close()
      self._tb.close()
