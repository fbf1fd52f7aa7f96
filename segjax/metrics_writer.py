"""Writes what a run measured: JSON lines in WORKDIR/metrics.jsonl and TensorBoard event files."""
import json
import os

import jax
import numpy as np
from tensorboardX import SummaryWriter

from segjax.errors import UserError


class MetricsWriter:
  """Appends one JSON line per record and mirrors scalars and images to TensorBoard.

  Only process 0 writes, so a multi-host run produces one file, not one per host. A run resumed at
  `resumed_step` first drops what the run before it logged after that step (it is logged again),
  so each step is recorded once and a resumed run plots as an uninterrupted one. `rescored`: the
  eval of `resumed_step` is run again, so an earlier line of it goes too.
  """

  def __init__(self, workdir, resumed_step=None, rescored=False):
    self._active = jax.process_index() == 0
    if not self._active:
      return
    self._path = os.path.join(workdir, "metrics.jsonl")
    self._guarded(lambda: _drop_after(self._path, resumed_step, rescored) if resumed_step is not None else None)
    self._jsonl = self._guarded(lambda: open(self._path, "a"))
    # TensorBoard hides what older event files hold from this step on (a SessionLog START event);
    # an eval run again at `resumed_step` gives the same figures as any earlier one there.
    purge = None if resumed_step is None else resumed_step + 1
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=purge)

  def _guarded(self, write):
    try:
      return write()
    except OSError as e:
      raise UserError(f"Cannot write {self._path} ({e.strerror}); free space there or choose another "
                      "--workdir and rerun, which resumes from the latest checkpoint.") from e

  def write(self, step, kind, scalars, extra=None):
    if not self._active:
      return
    record = {"step": int(step), "kind": kind, **{k: float(v) for k, v in scalars.items()}, **(extra or {})}

    def append():
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
    self._guarded(append)
    for name, value in scalars.items():
      self._tb.add_scalar(f"{kind}/{name}", float(value), int(step))

  def images(self, step, name, images):
    """images: (N, H, W, 3) uint8."""
    if self._active:
      self._tb.add_images(name, np.asarray(images), int(step), dataformats="NHWC")

  def close(self):
    if self._active:
      self._tb.close()
      self._guarded(self._jsonl.close)


def _drop_after(path, step, rescored):
  """Rewrites `path` without the train and eval lines after `step` (and its eval line when
  `rescored`) and without a torn last line; `eval_only` lines (scores of a checkpoint, not part of
  the training) stay."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      record = json.loads(line)
    except ValueError:  # a line cut short by a kill or a full disk
      continue
    kind, at = record.get("kind"), record.get("step", 0)
    if kind == "eval_only" or at < step or (at == step and not (rescored and kind == "eval")):
      kept.append(line if line.endswith("\n") else line + "\n")
  if kept != lines:
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)
