"""Times the train step and inference on device-resident synthetic batches (no TensorFlow), or
with --input the tf.data pipeline alone.

python -m segjax.benchmark --config=configs/bench/deeplabv3_r50_os8.py [--config.benchmark.steps=50]
python -m segjax.benchmark --config=configs/bench/eomt_vit_s_640.py --against=configs/bench/mask_former_r50_512.py
python -m segjax.benchmark --input --config=configs/cityscapes/panoptic.py --config.dataset.manual_dir=D
python -m segjax.benchmark --scoring --config=configs/cityscapes/panoptic.py [--config.benchmark.steps=60]

Prints one JSON line per measurement (`train`, `infer`), in the form of
shared/bench/peer_torchvision.py so the two can be read side by side: images/s, step ms, peak
device memory, FLOPs per image from XLA's cost analysis, and the TFLOP/s that makes.
The batch stays on the devices, so the figures are the step's own, not the input pipeline's.
`--against` times a second config in turn with the first, round by round, and adds a line with the
ratio of their seconds per image: a comparison that the machine's load shifting between minutes
moves less.
`--input` prints one `input` line instead: the images/s that decoding, augmentation, targets and
batching deliver on this process, and per CPU core, for any training config.
`--scoring` prints one `scoring` line: the images/s at which this host scores synthetic
Cityscapes-size panoptic predictions (COCO masks, PQ and the official files), in the eval's own
process and on its pool of worker processes, and how close an eval whose device takes as long as
the scoring comes to the longer of the two.
"""
import json
import os
import sys
import time

from absl import app, flags
import jax
from ml_collections import config_flags

from segjax import config as config_lib
from segjax import heads
from segjax.engine import host_memory, inference, parallel, train
from segjax.engine.scoring_benchmark import run_scoring
from segjax.errors import UserError

_MODES = ("train", "infer")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Benchmark config (configs/bench/*.py).",
                                          lock_config=True)
_INPUT = flags.DEFINE_bool("input", False, "Time the tf.data input pipeline of the config instead.")
_AGAINST = config_flags.DEFINE_config_file(
    "against", None, "A second config with the same benchmark.modes, timed in turn with --config round "
    "by round (--config's rounds), with the ratio of their seconds per image.", lock_config=True)
_SCORING = flags.DEFINE_bool("scoring", False, "Time host scoring of synthetic Cityscapes-size panoptic "
                             "predictions instead (config.benchmark.steps images).")
flags.mark_flags_as_required(["config"])


def synthetic_batch(config, mesh, rng):
  """A global training batch of random pixels and labels (and the head's targets), on the devices."""
  n, size, classes = config.batch_size, config.benchmark.image_size, config.dataset.num_classes
  keys = jax.random.split(rng, 3)
  batch = {"image": jax.random.uniform(keys[0], (n, size, size, 3)),
           "semantic": jax.random.randint(keys[1], (n, size, size), 0, classes),
           **heads.get(config).synthetic_targets(config, keys[2], n, size)}
  return jax.device_put(batch, parallel.batch_sharding(mesh))


def _cost(compiled):
  """FLOPs of one call and the memory XLA plans for it (arguments, outputs and temporaries)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", 0.0)) if cost else 0.0
  mem = compiled.memory_analysis()
  planned = None
  if mem is not None:
    planned = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
               - mem.alias_size_in_bytes)
  return flops, planned


def _peak_bytes():
  """Peak bytes in use so far on the first local device, where the backend reports it (GPU, TPU);
  JAX has no reset, so a record's peak includes every step run before it (the train step's, the
  other config's)."""
  stats = jax.local_devices()[0].memory_stats()
  return stats.get("peak_bytes_in_use") if stats else None


def _round(step, carry, args, steps):
  """(seconds per call, carry) over `steps` calls; `carry` is threaded through, the rest held fixed."""
  start = time.perf_counter()
  for _ in range(steps):
    carry = step(carry, *args)
  jax.block_until_ready(carry)
  return (time.perf_counter() - start) / steps, carry


def _gib(num_bytes):
  return None if num_bytes is None else round(num_bytes / 2**30, 3)


def _sized(config):
  """The config with what the model's shapes need; the benchmark reads no data, so no dataset
  descriptor fills them."""
  ds = config.dataset
  if ds.num_classes is None or ("instance" in heads.get(config).label_keys and ds.thing_classes is None):
    raise UserError("The benchmark reads no dataset: set config.dataset.num_classes (and "
                    "config.dataset.thing_classes for a head that predicts instances) in the benchmark config.")
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.input.crop_size = (config.benchmark.image_size,) * 2
    config.dataset.ignore_label = 255 if ds.ignore_label is None else ds.ignore_label
    config.dataset.label_divisor = 1000 if ds.label_divisor is None else ds.label_divisor
  return config


class _Side:
  """One config's model, state and synthetic batch, and the cost of each mode's compiled step."""

  def __init__(self, config, devices):
    config_lib.validate(config)
    self.config = config = _sized(config)
    self.mesh = mesh = parallel.make_mesh(devices, fsdp=config.mesh.fsdp)
    parallel.check_batch_size(config.batch_size, mesh)
    unknown = set(config.benchmark.modes) - set(_MODES)
    if unknown:
      raise UserError(f"Unknown benchmark mode(s) {', '.join(sorted(unknown))}: choose train and/or infer "
                      "(config.benchmark.modes).")
    self.model, self.train_fn, _, self.state = train.setup(config, mesh)
    self.batch = synthetic_batch(config, mesh, jax.random.key(config.seed + 1))
    self.common = {"bench": "segjax", "model": "+".join([config.model.backbone] + [
        type(module).__name__ for _, module, _ in self.model.decoders]),
                   "batch": config.batch_size, "size": config.benchmark.image_size, "dtype": config.model.dtype,
                   "devices": mesh.devices.size, "device_kind": jax.devices()[0].device_kind,
                   "jax": jax.__version__}
    self.costs = {}

  def step(self, mode):
    """(step, carry, args) of `mode`, compiled; inference reads the weights the train step left."""
    if mode == "train":
      compiled = self.train_fn.lower(self.state, self.batch).compile()
      self.costs[mode] = _cost(compiled)
      return (lambda s, b: compiled(s, b)[0]), self.state, (self.batch,)  # the state is donated: threaded
    # What a deployed model runs: the forward pass and its post-processing, under config.eval.
    variables = {"params": self.state.params, "batch_stats": self.state.batch_stats}
    infer = jax.jit(inference.make_inference_fn(self.model, self.config),
                    in_shardings=(parallel.state_sharding(variables, self.mesh), parallel.batch_sharding(self.mesh)))
    compiled = infer.lower(variables, self.batch["image"]).compile()
    self.costs[mode] = _cost(compiled)
    return (lambda _, v, images: compiled(v, images)), None, (variables, self.batch["image"])

  def record(self, mode, times):
    n, seconds = self.config.batch_size, min(times)
    flops, planned = self.costs[mode]
    record = dict(self.common, mode=mode, step_ms=round(seconds * 1e3, 2), images_per_s=round(n / seconds, 1),
                  round_ms=[round(t * 1e3, 2) for t in times],
                  peak_mem_gib=_gib(_peak_bytes()), planned_mem_gib=_gib(planned),
                  flops_per_image=int(flops / n) if flops else None,
                  achieved_tflops=round(flops / seconds / 1e12, 3) if flops else None)
    print(json.dumps(record), flush=True)
    return record


def run(config, devices=None, against=None):
  """Runs the configured measurements and returns their records (dicts), printing each as a line.

  Each mode runs `config.benchmark.rounds` rounds of `steps` calls after `warmup_steps` and reports
  the fastest round, as timeit advises: a slower one timed the machine's other work too (one
  round's mean moved 15-20% between minutes on a 2-core VM). With `against`, a second config with
  the same modes, the two take turns round by round (`config`'s rounds, each its own steps), so
  the machine's slower minutes fall on both alike, and a third record per mode gives the first's
  seconds per image over the second's."""
  if against is not None and set(config.benchmark.modes) != set(against.benchmark.modes):
    raise UserError(f"--config times {', '.join(config.benchmark.modes)} and --against "
                    f"{', '.join(against.benchmark.modes)}: give both the same config.benchmark.modes.")
  sides = [_Side(config, devices)] + ([_Side(against, devices)] if against is not None else [])
  records = []
  for mode in (m for m in _MODES if m in config.benchmark.modes):
    steps = [side.step(mode) for side in sides]
    carries = []
    for side, (step, carry, args) in zip(sides, steps):
      for _ in range(side.config.benchmark.warmup_steps):
        carry = step(carry, *args)
      carries.append(jax.block_until_ready(carry))
    times = [[] for _ in sides]
    for _ in range(config.benchmark.rounds):
      for i, (side, (step, _, args)) in enumerate(zip(sides, steps)):
        seconds, carries[i] = _round(step, carries[i], args, side.config.benchmark.steps)
        times[i].append(seconds)
    if mode == "train":
      for side, carry in zip(sides, carries):
        side.state = carry
    mine = [side.record(mode, t) for side, t in zip(sides, times)]
    records += mine
    if against is not None:
      per_image = [min(t) / side.config.batch_size for side, t in zip(sides, times)]
      ratio = {"bench": "segjax", "mode": mode, "of": mine[0]["model"], "to": mine[1]["model"],
               "seconds_per_image_ratio": round(per_image[0] / per_image[1], 3)}
      records.append(ratio)
      print(json.dumps(ratio), flush=True)
  return records


def run_input(config):
  """Times this process's training batches from the config's dataset: warmup_steps batches, then
  `steps` batches timed. Returns the record it prints."""
  try:
    from segjax import data  # pylint: disable=g-import-not-at-top  (TensorFlow only in this mode)
  except ImportError as e:
    raise UserError(f"--input times the tf.data pipeline and needs TensorFlow and tensorflow-datasets "
                    f"({e}); install segjax with its dependencies.") from e

  config_lib.validate(config)
  config, _ = data.resolve(config)
  host_batch, bench = parallel.host_batch_size(config.batch_size), config.benchmark
  batches = data.train_batches(config, 0, host_batch)
  for _ in range(bench.warmup_steps):
    next(batches)
  start = time.perf_counter()
  for _ in range(bench.steps):
    next(batches)
  rate = bench.steps * host_batch / (time.perf_counter() - start)
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  record = {"bench": "segjax", "mode": "input", "dataset": config.dataset.name,
            "crop": list(config.input.crop_size), "instance_targets": "instance" in heads.get(config).label_keys,
            "batch": host_batch, "processes": jax.process_count(), "cpu_cores": cores,
            "images_per_s": round(rate, 2), "images_per_s_per_core": round(rate / cores, 2)}
  print(json.dumps(record), flush=True)
  return record


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  host_memory.reuse_freed_memory()  # before any other thread allocates
  try:
    if _INPUT.value or _SCORING.value:
      if _AGAINST.value is not None:
        raise UserError("--against times two models' steps in turn; it does not go with --input or --scoring.")
      (run_input if _INPUT.value else run_scoring)(config)
    else:
      run(config, against=_AGAINST.value)
  except UserError as e:
    sys.exit(f"segjax.benchmark: error: {e}")
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    reason = str(e).split("\n")[0].removeprefix("RESOURCE_EXHAUSTED: ").rstrip(".")
    sys.exit(f"segjax.benchmark: error: batch {config.batch_size} at {config.benchmark.image_size}x"
             f"{config.benchmark.image_size} does not fit on {jax.devices()[0].device_kind} ({reason}); "
             "lower --config.batch_size or --config.benchmark.image_size.")


if __name__ == "__main__":
  app.run(main)
