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
  so each step is recorded once and a resumed run plots as an uninterrupted one. Without it (a
  reader such as --eval_only, beside a run that may be logging) lines are only appended.
  """

  def __init__(self, workdir, resumed_step=None):
    self._active = jax.process_index() == 0
    if not self._active:
      return
    self._path = os.path.join(workdir, "metrics.jsonl")
    if resumed_step is not None:
      self._guarded(lambda: _drop_after(self._path, resumed_step))
    self._guarded(lambda: open(self._path, "a").close())  # an unwritable file is said before any work
    # TensorBoard hides what older event files hold from this step on (a SessionLog START event).
    purge = None if resumed_step is None else resumed_step + 1
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=purge)

  def _guarded(self, write):
    try:
      return write()
    except OSError as e:
      raise UserError(f"Cannot write {self._path} ({e.strerror}); free space there and rerun, which "
                      "resumes from the latest checkpoint.") from e

  def write(self, step, kind, scalars, extra=None):
    if not self._active:
      return
    record = {"step": int(step), "kind": kind, **{k: float(v) for k, v in scalars.items()}, **(extra or {})}

    def append():  # opened for each line: the run may rewrite the file between two (a resume)
      torn = _torn(self._path)  # a killed run's last line: ours starts a new one
      with open(self._path, "a") as f:
        f.write(("\n" if torn else "") + json.dumps(record) + "\n")
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


def logged(workdir, kind, step):
  """Whether WORKDIR/metrics.jsonl has a `kind` line for `step`."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    return False
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except ValueError:
        continue
      if record.get("kind") == kind and record.get("step") == step:
        return True
  return False


def _torn(path):
  """Whether the file `path` ends inside a line."""
  if not os.path.isfile(path):
    return False
  with open(path, "rb") as f:
    if f.seek(0, os.SEEK_END) == 0:
      return False
    f.seek(-1, os.SEEK_END)
    return f.read(1) != b"\n"


def _drop_after(path, step):
  """Rewrites `path` without a torn last line (a kill, a full disk) and without the train and eval
  lines after `step`, where a run resumes; `eval_only` lines (scores of a checkpoint, not part of
  the training) stay."""
  if not os.path.isfile(path):  # nothing yet, or not a file to rewrite (a pipe, a device)
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if record.get("kind") == "eval_only" or record.get("step", 0) <= step:
      kept.append(line if line.endswith("\n") else line + "\n")
  if kept != lines:
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)
