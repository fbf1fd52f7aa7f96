"""The train and eval steps, pure and jitted over a device mesh, and the loop around them.

Importing this module loads no TensorFlow: the input pipeline is imported inside
`train_and_evaluate`, so the steps can be benchmarked or reused without it.
"""
from concurrent import futures
import errno
import functools
import itertools
import json
import math
import os
import tempfile
import time
from typing import Any, NamedTuple

from absl import logging
import flax
import jax
import jax.numpy as jnp
import optax

from segjax import config as config_lib
from segjax import heads
from segjax.engine import compilation, inference, metrics_writer, optimizer, parallel, preemption, programs
from segjax.engine.checkpoint import Checkpointer
from segjax.engine.curves import plot_curves
from segjax.engine.evaluator import evaluate
from segjax.engine.metrics_writer import MetricsWriter
from segjax.errors import UserError
from segjax.evaluation import confusion_matrix
from segjax.weights import pretrained


# A train step's metric that is no figure: whether the new parameters and statistics are all finite.
FINITE = "state_finite"


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def create_train_state(model, tx, rng, image_size):
  """image_size: (height, width) of the images to initialise with."""
  variables = model.init(rng, jnp.zeros((1, *image_size, 3), jnp.float32), train=False)
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(variables["params"]))


def train_step(state, batch, *, model, tx, schedule, head, config):
  """One optimisation step on a global batch; BatchNorm statistics are over the whole batch.
  Stochastic depth and the head's sampling draw from the seed and the step, so a resumed run draws
  what a straight one does."""
  key = jax.random.fold_in(jax.random.key(config.seed), state.step)

  def loss_fn(params):
    outputs, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                   batch["image"], train=True, mutable=["batch_stats"], rngs={"dropout": key},
                                   **head.train_inputs(config, state.step))
    loss, parts = head.loss(outputs, batch, config, jax.random.fold_in(key, 1))
    return loss, (parts, updates["batch_stats"])

  (loss, (parts, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, **parts, "learning_rate": schedule(state.step), "grad_norm": optax.tree.norm(grads)}
  if isinstance(opt_state, optax.ApplyIfFiniteState):  # make_optimizer's: a skipped step skips them too
    # An update applied although not finite (more in a row than allowed) stops the run anyway.
    batch_stats = jax.tree.map(lambda new, old: jnp.where(opt_state.last_finite, new, old),
                               batch_stats, state.batch_stats)
    metrics["skipped_steps"] = opt_state.total_notfinite.astype(jnp.float32)  # the run's, checkpointed
  metrics[FINITE] = jnp.all(jnp.asarray([jnp.isfinite(x).all() for x in jax.tree.leaves((params, batch_stats))])
                            )  # every metric is float32
  metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  return new_state, metrics


def eval_step(state, batch, *, infer, config):
  """The common outputs of one global batch, post-processed on device, and its confusion matrix
  (padding excluded). Images the pipeline resized to a base size (their `input_height` and
  `input_width`) are scored at their own size, on the labels' canvas."""
  back = None
  if "input_height" in batch:
    sizes = jnp.stack([batch["input_height"], batch["input_width"], batch["height"], batch["width"]], -1)
    back = (sizes, batch["semantic"].shape[1:3])
  return scored(infer({"params": state.params, "batch_stats": state.batch_stats}, batch["image"], back), batch,
                config)


def scored(result, batch, config):
  """`result`, the common outputs of a batch, with the confusion matrix of its semantic map: tests
  feed it outputs of their own."""
  ds = config.dataset
  return {**result, "confusion": confusion_matrix(result["semantic"], batch["semantic"], batch["valid"],
                                                  ds.num_classes, ds.ignore_label)}


def compile_steps(model, tx, schedule, config, mesh, state_shardings, context):
  """The jitted train and eval steps: state as `state_shardings`, batch split over the mesh; found
  on disk without tracing where stored under `context`, what else they depend on (programs.py)."""
  rep, split = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  train = lambda: jax.jit(
      functools.partial(train_step, model=model, tx=tx, schedule=schedule, head=heads.get(config),
                        config=config),
      in_shardings=(state_shardings, split), out_shardings=(state_shardings, rep), donate_argnums=0)
  # Outputs keep the batch split; the confusion matrix, a sum over it, comes out replicated.
  infer = inference.make_inference_fn(model, config)
  eval_fn = lambda: jax.jit(functools.partial(eval_step, infer=infer, config=config),
                            in_shardings=(state_shardings, split))
  return programs.cached("train_step", train, context), programs.cached("eval_step", eval_fn, context)


class Setup(NamedTuple):
  model: Any
  train_fn: Any
  eval_fn: Any
  state: TrainState


def setup(config, mesh):
  """The model, its jitted train and eval steps, and the initial state on `mesh` (split over its
  `fsdp` axis, parallel.state_sharding). The steps and the initialisation are kept on disk where
  segjax.engine.programs is on: a warm start neither traces nor compiles them."""
  try:
    model = heads.build_segmenter(config.model, config.dataset.num_classes)
  except ValueError as e:
    raise UserError(str(e)) from e
  tx, schedule = optimizer.make_optimizer(config)
  make = functools.partial(create_train_state, model, tx, image_size=tuple(config.input.crop_size))
  context = json.dumps([config.to_json_best_effort(sort_keys=True), mesh.axis_names, mesh.devices.shape,
                        [d.id for d in mesh.devices.flat]])

  def init():  # the shardings need the state's shapes: traced only when no stored program has them
    return jax.jit(make, out_shardings=parallel.state_sharding(jax.eval_shape(make, jax.random.key(0)), mesh))

  state = programs.cached("create_train_state", init, context)(jax.random.key(config.seed))
  train_fn, eval_fn = compile_steps(model, tx, schedule, config, mesh, jax.tree.map(lambda x: x.sharding, state),
                                    context)
  return Setup(model, train_fn, eval_fn, state)


def _holds_files(directory):
  """Whether `directory` exists and is not empty, asked without creating it (as Checkpointer would)."""
  return os.path.isdir(directory) and bool(os.listdir(directory))


def _unwritable(workdir, reason):
  return UserError(f"Cannot write to workdir '{workdir}' ({reason}); choose a writable --workdir.")


def _check_makeable(workdir):
  """Before any work, without creating anything: the workdir's nearest existing folder must be one
  this process can write to, so a mistyped --workdir does not wait for a dataset to be built."""
  path = os.path.abspath(workdir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    raise _unwritable(workdir, os.strerror(errno.ENOTDIR))
  if not os.access(path, os.W_OK | os.X_OK):
    raise _unwritable(workdir, os.strerror(errno.EACCES))


def _check_writable(workdir):
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write_test"):  # unique per process
      pass
  except OSError as e:
    raise _unwritable(workdir, e.strerror) from e


def train_and_evaluate(config, workdir):
  """Trains and evaluates per `config`, resuming from the latest checkpoint in `workdir`."""
  from segjax import data  # pylint: disable=g-import-not-at-top  (TensorFlow stays out of the steps)

  config_lib.validate(config)
  mesh = parallel.make_mesh(fsdp=config.mesh.fsdp)
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
  _check_makeable(workdir)
  checkpoints = os.path.join(workdir, "checkpoints")
  if config.model.init_from.path and not _holds_files(checkpoints):
    pretrained.check(config.model)  # a resumed run never reads it
  config, class_names = data.resolve(config)  # everything that follows from the data; no workdir yet
  config_lib.validate(config)  # again: the values the dataset filled in, against the rest
  _check_writable(workdir)
  ckpt = Checkpointer(checkpoints, config.keep_checkpoints)
  try:
    return _train(config, class_names, workdir, mesh, ckpt)
  finally:  # an in-flight async save completes even when the run stops on an error
    ckpt.close()


def evaluate_checkpoint(config, workdir):
  """(step, scores) of the newest complete checkpoint in `workdir`, whose run may still be training,
  under `config`, whose config.eval may name another protocol than the run was evaluated with;
  appends an `eval_only` line to metrics.jsonl with the protocol, the eval's canvases and padded
  share, and the seconds per image of the eval step (compiling left out: the first batch of each
  canvas is run once before it is timed), and touches nothing else of the run's."""
  from segjax import data  # pylint: disable=g-import-not-at-top  (TensorFlow stays out of the steps)

  config_lib.validate(config)
  started, compiles = time.perf_counter(), compilation.Counter()
  mesh = parallel.make_mesh(fsdp=config.mesh.fsdp)
  parallel.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
  directory = os.path.join(workdir, "checkpoints")
  missing = UserError(f"No checkpoint in '{directory}' to evaluate; train first without --eval_only.")
  if not _holds_files(directory):  # said before the dataset is built
    raise missing
  config, class_names = data.resolve(config)
  config_lib.validate(config)
  _, _, eval_fn, state = setup(config, mesh)
  ckpt = Checkpointer(directory, read_only=True)  # its run may be saving
  try:
    # The variables alone: the run's optimizer may have been another than --config's.
    found = ckpt.restore_newest_variables({"params": state.params, "batch_stats": state.batch_stats})
  finally:
    ckpt.close()
  if found is None:
    raise missing
  step, variables = found
  state = state.replace(**variables)
  seconds, images, shapes = [], [], set()

  def timed(state, batch):
    shape = batch["image"].shape, batch["semantic"].shape
    if shape not in shapes:  # compiles
      jax.block_until_ready(eval_fn(state, batch))
      if not shapes:
        _first("eval batch", started, compiles)
      shapes.add(shape)
    start = time.perf_counter()
    out = jax.block_until_ready(eval_fn(state, batch))
    seconds.append(time.perf_counter() - start)
    images.append(int(jnp.sum(batch["valid"])))
    return out

  per_image = lambda: {"seconds_per_image": sum(seconds) / max(sum(images), 1)}
  eval_data = data.EvalData(config, parallel.host_batch_size(config.eval_batch_size))
  notes = {"protocol": inference.protocol(config)._asdict(), "canvases": [b.canvas for b in eval_data.buckets],
           "padded_share": round(eval_data.padded_share, 4)}
  writer = MetricsWriter(workdir)
  try:
    return step, evaluate(timed, state, eval_data, mesh, config, class_names, step, workdir, writer,
                          kind="eval_only", extra=per_image, notes=notes)
  finally:
    writer.close()
    compiles.close()


def _train(config, class_names, workdir, mesh, ckpt):
  init_from = config.model.init_from.path
  started, compiles = time.perf_counter(), compilation.Counter()
  inputs = _Inputs(config, ckpt.latest_step() or 0)
  _, train_fn, eval_fn, state = setup(config, mesh)
  resumed = ckpt.restore_latest(state)  # the checkpoint wins: a resumed run never reads init_from
  if resumed is not None:
    latest, state, meta = resumed
    logging.info("Resuming from the checkpoint at step %d in %s%s.", latest, ckpt.directory,
                 " (config.model.init_from is not read)" if init_from else "")
  elif init_from:
    state = state.replace(**pretrained.load({"params": state.params, "batch_stats": state.batch_stats},
                                            config.model))
  start = int(state.step)
  # Stopped by a signal at an eval step, a run saves before scoring: its rerun scores first, unless an
  # earlier rerun did (the eval line is in metrics.jsonl).
  unscored = resumed is not None and meta.get("unscored", False) and start <= config.total_steps
  unscored = unscored and not parallel.on_process_0(lambda: metrics_writer.logged(workdir, "eval", start))
  if start >= config.total_steps and not unscored:  # its config.json stays the one it was trained with
    compiles.close()
    logging.info("Run already finished: step %d >= total_steps %d; nothing to train.", start,
                 config.total_steps)
    return state
  if jax.process_index() == 0:  # only now: a failed restore leaves the run's files as they were
    _write_whole(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
    _write_whole(os.path.join(workdir, "class_names.json"), json.dumps(list(class_names)))

  writer = MetricsWriter(workdir, resumed_step=start)  # step 0: a run that died before any checkpoint
  eval_data = inputs.eval_data()
  score = lambda state, step: evaluate(  # official output files of the final model only (slow)
      eval_fn, state, eval_data, mesh, config, class_names, step, workdir, writer,
      official_files=step == config.total_steps)
  save = lambda state, step, unscored=False: ckpt.save(step, state, {
      "step": step, "config": json.loads(config.to_json_best_effort()), "unscored": unscored})
  try:
    with preemption.Watcher() as watcher:  # a signal from here on stops after the next step
      if unscored:
        score(state, start)
      batches = inputs.train_batches(start)
      logging.info("Training steps %d..%d on %d devices, global batch %d.", start, config.total_steps,
                   mesh.devices.size, config.batch_size)
      t0, s0 = time.perf_counter(), start
      for step in range(start + 1, config.total_steps + 1):
        state, metrics = train_fn(state, parallel.to_global(next(batches), mesh))
        if step == start + 1:
          jax.block_until_ready(metrics)
          _first("train step", started, compiles)
        last, stop = step == config.total_steps, watcher.stop(step)
        logs, saves = step % config.log_every == 0 or last, step % config.checkpoint_every == 0 or last
        evals = step % config.eval_every == 0 or last
        if logs or saves or evals or stop:  # a diverged state is never scored or saved
          metrics = jax.device_get(metrics)
          _check_finite(metrics, step, config.optimizer.skip_nonfinite, ckpt)
        if logs:
          rate = (step - s0) / (time.perf_counter() - t0)
          writer.write(step, "train", {**metrics, "steps_per_sec": rate})
          logging.info("step %d/%d loss %.4f lr %.2e %.2f steps/s ETA %s", step, config.total_steps,
                       metrics["loss"], metrics["learning_rate"], rate,
                       time.strftime("%H:%M:%S", time.gmtime((config.total_steps - step) / rate)))
          t0, s0 = time.perf_counter(), step
        if stop:  # its eval waits for the rerun: a grace period is short
          save(state, step, unscored=evals)
          ckpt.wait()
          watcher.exit(step, ckpt.directory)
        if evals:
          score(state, step)
        if saves:
          save(state, step)
  finally:
    writer.close()
    compiles.close()
  if jax.process_index() == 0:
    plot_curves(workdir)
  return state


class _Inputs:
  """The eval data, then the training batches from the step a run is guessed to start at with their
  first batch, made in a thread while the steps are set up: on a warm start (programs.py) loading
  them takes about as long as the input pipeline's start. With several processes they are made when
  asked, in order: making them agrees with the other processes over collectives, as restoring does."""

  def __init__(self, config, start):
    self._config, self._start = config, start
    self._eval = self._train = None
    if jax.process_count() == 1:
      pool = futures.ThreadPoolExecutor(1, thread_name_prefix="segjax-inputs")
      self._eval, self._train = pool.submit(self._eval_data), pool.submit(self._first_batch)
      pool.shutdown(wait=False)  # its thread ends with the two tasks

  def _eval_data(self):
    return _data().EvalData(self._config, parallel.host_batch_size(self._config.eval_batch_size))

  def _batches(self, start):
    return _data().train_batches(self._config, start, parallel.host_batch_size(self._config.batch_size))

  def _first_batch(self):
    batches = self._batches(self._start)
    return itertools.chain([next(batches)], batches)

  def eval_data(self):
    return self._eval.result() if self._eval else self._eval_data()

  def train_batches(self, start):
    """From step `start`: those already made where it is the step guessed."""
    made, self._train = self._train, None
    if made and start == self._start:
      return made.result()
    if made:
      made.cancel()  # the guess was wrong (a damaged newest checkpoint moved aside): dropped
    return self._batches(start)


def _data():
  from segjax import data  # pylint: disable=g-import-not-at-top  (TensorFlow stays out of the steps)
  return data


def _first(what, started, compiles):
  """Logs how long the start took and what the compilation cache gave it."""
  logging.info("First %s done %.1f s after setup began (%s).", what, time.perf_counter() - started,
               compiles.describe())
  compiles.close()


def _write_whole(path, text):
  """Writes aside, then renames: predict may be reading the file meanwhile."""
  with open(f"{path}.{os.getpid()}.tmp", "w") as f:
    f.write(text)
  os.replace(f.name, path)


def _check_finite(metrics, step, skip, ckpt):
  """Stops the run when the step's loss is not finite, unless the step was skipped (`skip` allows
  that many in a row), and whenever the parameters or BatchNorm statistics are not."""
  finite_state, loss = metrics.pop(FINITE), metrics["loss"]
  if finite_state and (skip or math.isfinite(loss)):
    return
  good = ckpt.latest_step()
  what = (f"Loss became {loss} at step {step}" if not math.isfinite(loss) else
          f"The parameters became non-finite at step {step} (loss {loss:.4g})")
  raise UserError(
      what + (f" after more than {skip} non-finite steps in a row" if skip and not finite_state else "") + "; "
      + (f"the last good checkpoint, step {good}, is kept" if good is not None else "no checkpoint was saved")
      + ": lower config.optimizer.lr, set config.optimizer.grad_clip_norm, or let "
      "config.optimizer.skip_nonfinite=N skip up to N such steps in a row.")
