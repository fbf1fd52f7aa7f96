"""Host scoring of eval images beside the device: each image's COCO masks, PQ matches and official
files are worked out in worker processes and merged here in image order, so every figure, annotation
id and file is the one that scoring the images one after another in this process gives.

The workers are spawned, never forked: the eval's process runs JAX's and TensorFlow's threads, which a
fork would copy in whatever state they are in. They import this module, NumPy, pycocotools and Pillow
only (nothing this module imports may import JAX or TensorFlow), and not the program's main module,
which a spawned process otherwise runs again: JAX, TensorFlow and, in a script without an
`if __name__ == "__main__":` guard, the whole script.
"""
from collections import deque
import concurrent.futures
import contextlib
from concurrent.futures.process import BrokenProcessPool
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from typing import NamedTuple, Optional

from absl import logging
import numpy as np

from segjax.errors import UserError
from segjax.evaluation.coco import CocoMaskEvaluator
from segjax.evaluation.label_files import write_labels
from segjax.evaluation.panoptic_files import PanopticFiles
from segjax.evaluation.panoptic_quality import PanopticQuality, panoptic_from_labels

WORKERS_VARIABLE = "SEGJAX_SCORING_WORKERS"
# One worker per core, not one less: the eval's own process mostly waits. On 2 cores, 1024x2048
# panoptic images with their files: 1 worker 3.5 images/s, 2 workers 6.3, 3 workers 5.6.
MAX_WORKERS = 16
# Below this many pixels an image scores in milliseconds, about what sending it to a worker costs.
MIN_POOLED_PIXELS = 512 * 512
# Batches submitted and not yet merged: the worker processes always have the next batch to score,
# and memory holds no more than this many batches' images.
IN_FLIGHT = 2


@dataclasses.dataclass(frozen=True)
class Setup:
  """What scoring an image takes besides its arrays: the dataset's classes and ids, and which files
  go where. Plain values, sent once to each worker."""
  class_names: tuple
  num_classes: int
  thing_classes: tuple
  label_ids: Optional[tuple]
  label_divisor: Optional[int]
  ignore_label: int
  instances: bool  # COCO masks and PQ
  folder: Optional[str] = None  # the official files' folder; None: no files

  @classmethod
  def from_dataset(cls, ds, class_names, instances, folder=None):
    """From a resolved config.dataset."""
    ints = lambda v: None if v is None else tuple(int(i) for i in v)
    return cls(tuple(class_names), int(ds.num_classes), ints(ds.get("thing_classes")) or (),
               ints(ds.get("label_ids")), ds.get("label_divisor"), int(ds.ignore_label), instances, folder)


class Image(NamedTuple):
  """One valid image of a batch, every map cut to its own size. panoptic_id: its id in the COCO
  panoptic files (the dataset's, or its name); pred_semantic: only where label files are written."""
  image_id: int
  name: str
  panoptic_id: object
  semantic: np.ndarray
  instance: Optional[np.ndarray]
  pred_semantic: Optional[np.ndarray]
  pred_instances: Optional[dict]
  pred_panoptic: Optional[np.ndarray]


class ImageScorer:
  """Scores images one at a time (`score`, what a worker runs) and collects their parts in the order
  given (`merge`, in the eval's process): COCO annotations and results, PQ sums, the panoptic files'
  entries."""

  def __init__(self, setup):
    self.setup = setup
    self.coco = self.pq = self.files = None
    if setup.instances:
      self.coco = CocoMaskEvaluator(setup.class_names, setup.thing_classes, setup.label_ids)
      self.pq = PanopticQuality(setup.num_classes, setup.thing_classes, setup.label_divisor)
      if setup.folder is not None:
        self.files = PanopticFiles(setup.folder, setup.class_names, setup.thing_classes, setup.label_ids,
                                   setup.label_divisor)

  def score(self, image):
    """One image's part, and the seconds it took."""
    start, setup, part = time.perf_counter(), self.setup, {}
    if setup.folder is not None:
      write_labels(os.path.join(setup.folder, "labels"), image.name, image.pred_semantic, setup.label_ids)
    if setup.instances:
      part["coco"] = self.coco.score(image.image_id, image.semantic, image.instance, image.pred_instances)
      truth = panoptic_from_labels(image.semantic, image.instance, setup.thing_classes, setup.ignore_label,
                                   setup.label_divisor)
      part["pq"] = self.pq.match(truth, image.pred_panoptic)
      if self.files is not None:
        part["files"] = self.files.save(image.panoptic_id, image.name, truth, image.pred_panoptic)
    return part, time.perf_counter() - start

  def merge(self, part):
    if "coco" in part:
      self.coco.merge(part["coco"])
      self.pq.merge(part["pq"])
    if "files" in part:
      self.files.merge(part["files"])


def default_workers(pixels):
  """Processes to score images of `pixels` pixels on: $SEGJAX_SCORING_WORKERS where set (0: in the
  eval's own process), else one per CPU core this process may use (at most 16), or none where there
  is one core or an image is small enough that sending it costs about what scoring it does."""
  value = os.environ.get(WORKERS_VARIABLE, "").strip()
  if value:
    if not value.isdigit():
      raise UserError(f"{WORKERS_VARIABLE} is '{value}': give a number of worker processes, or 0 to score "
                      "in the eval's own process.")
    return int(value)
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  return min(cores, MAX_WORKERS) if cores > 1 and pixels >= MIN_POOLED_PIXELS else 0


class Scoring:
  """`with Scoring(setup) as scoring:` ... `scoring.submit(images)` per batch ... `scoring.finish()`:
  the images scored in worker processes while the loop goes on, their parts merged in the order
  submitted into `scoring.scorer` (an ImageScorer). At most IN_FLIGHT batches wait to be merged.

  The pool lives for one eval (started at the first batch, its size from default_workers) so that
  no process outlives the eval and none holds memory while the run trains; starting it takes a few
  tenths of a second, against minutes of scoring in an eval of real images.
  Leaving the `with` block, also on an error, shuts it down. A worker's exception is raised here as
  itself; a worker that dies (killed, out of memory) is no error: its images and the rest are
  scored in this process instead.
  """

  def __init__(self, setup, workers=None):
    self.scorer = ImageScorer(setup)
    self._setup, self._workers, self._pool = setup, workers, None
    self._fixed = workers is not None  # given, or set to 0 when a worker died
    self._batches = deque()  # [(image, future)] per submitted batch, oldest first
    self.work_seconds = 0.0  # scoring work, summed over images wherever they were scored
    self.wait_seconds = 0.0  # this process's time in scoring: waiting for workers or scoring itself

  @property
  def workers(self):
    return self._workers or 0

  def __enter__(self):
    return self

  def __exit__(self, *_):
    self.close()

  def close(self):
    if self._pool is not None:
      self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool = None

  def submit(self, images):
    """Scores one batch's images beside the loop: waits first for the batch IN_FLIGHT before it."""
    if not images:
      return
    if self._workers is None or (self._workers == 0 and not self._fixed):
      # Asked again while it says none: size buckets come smallest first, the large images later.
      self._workers = default_workers(max(image.semantic.size for image in images))
    while len(self._batches) >= IN_FLIGHT:
      self._merge(self._batches.popleft())
    if self._workers and self._pool is None:
      self._pool = concurrent.futures.ProcessPoolExecutor(
          self._workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
          initargs=(self._setup, os.getpid()))
    batch = []
    with _bare_main():  # a submit may start a worker
      for image in images:
        future = None
        if self._pool is not None:
          try:
            future = self._pool.submit(_score, _compact(image))
          except BrokenProcessPool as e:
            self._abandon_pool(e)
        batch.append((image, future))  # without a future: scored here when merged, in order
    self._batches.append(batch)

  def finish(self):
    """Waits for every image submitted and returns the scorer holding them all, merged in order."""
    while self._batches:
      self._merge(self._batches.popleft())
    return self.scorer

  def _merge(self, batch):
    start = time.perf_counter()
    for image, future in batch:
      part = None
      if future is not None:
        try:
          part, seconds = future.result()
        except BrokenProcessPool as e:
          self._abandon_pool(e)
      if part is None:
        part, seconds = self.scorer.score(image)
      self.scorer.merge(part)
      self.work_seconds += seconds
    self.wait_seconds += time.perf_counter() - start

  def _abandon_pool(self, error):
    if self._pool is not None:
      logging.warning("A scoring worker process died (%s); the eval scores its images in its own process "
                      "from here on.", error)
      self._pool.shutdown(wait=True, cancel_futures=True)  # the pool has ended the others
      self._pool, self._workers, self._fixed = None, 0, True


def _compact(image):
  """The image with each integer map in the smallest type that holds its values: what a worker gets
  is pickled and piped, and class and instance maps are mostly bytes (scoring reads any int type)."""

  def small(a):
    if a is None or a.dtype.kind not in "iu" or not a.size:
      return a
    low, high = int(a.min()), int(a.max())
    for dtype in (np.uint8, np.int8, np.uint16, np.int16):
      if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
        return a.astype(dtype)
    return a

  instances = image.pred_instances
  return image._replace(
      semantic=small(image.semantic), instance=small(image.instance), pred_semantic=small(image.pred_semantic),
      pred_panoptic=small(image.pred_panoptic),
      pred_instances=None if instances is None else {**instances, "instance_map": small(instances["instance_map"])})


@contextlib.contextmanager
def _bare_main():
  """Workers started meanwhile do not run the program's main module again: a spawned process runs
  the `__main__` it finds in sys.modules, and finds an empty one. They need only this module."""
  main = sys.modules["__main__"]
  sys.modules["__main__"] = types.ModuleType("__main__")
  try:
    yield
  finally:
    sys.modules["__main__"] = main


_worker_scorer = None


def _start_worker(setup, parent):
  """Builds the worker's scorer. Ctrl-C, and a scheduler's SIGTERM, reach every process of the
  group: the eval's own process decides what it stops (preemption.Watcher), so the worker ignores
  them; and it leaves when that process is gone, however it went."""
  global _worker_scorer
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
  _worker_scorer = ImageScorer(setup)


def _exit_when_orphaned(parent):
  while os.getppid() == parent:
    time.sleep(1.0)
  os._exit(1)  # pylint: disable=protected-access  (no clean-up is owed to a parent that is gone)


def _score(image):
  return _worker_scorer.score(image)
