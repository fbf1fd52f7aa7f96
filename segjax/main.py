"""Trains and evaluates a segmentation model.

python -m segjax.main --config=configs/semantic.py --workdir=/tmp/run [--config.total_steps=2000]
python -m segjax.main --config=configs/semantic.py --workdir=/tmp/run --eval_only --config.eval.flip=True

Multi-host: the same command on every process, with --distributed where the cluster describes
itself (TPU VM pods, SLURM) or --coordinator_address/--num_processes/--process_id (see launch/).
"""
import sys
import warnings

from absl import app, flags, logging
from ml_collections import config_flags

from segjax import config as config_lib
from segjax import flag_errors, logs
from segjax.engine import compilation
from segjax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and summaries.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", None, "Start jax.distributed with the cluster's own settings (TPU VM, SLURM). "
    "Default: the SEGJAX_DISTRIBUTED environment variable.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0 for a multi-process run. "
    "Default: SEGJAX_COORDINATOR_ADDRESS.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Default: SEGJAX_NUM_PROCESSES.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Default: SEGJAX_PROCESS_ID.")
_EVAL_ONLY = flags.DEFINE_bool("eval_only", False, "Score the workdir's latest checkpoint under --config "
                                "(e.g. --config.eval.flip=True) instead of training.")
_COMPILATION_CACHE = compilation.define_flag()
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv):
  try:
    rest = flags.FLAGS(argv)
    _CONFIG.value.keys()  # config_flags defers a missing file's IOError to the first access
    return rest
  except (AttributeError, KeyError, ValueError, TypeError, OSError, flags.Error) as e:
    reason = flag_errors.explain(e, argv[1:])
    if not reason:
      raise
    _fail(reason)


def _fail(reason):
  """Exits with the run's sentence last. The write a failed save abandoned is collected as Python
  shuts down, and Python would print "coroutine ... was never awaited" for it after the sentence."""
  warnings.filterwarnings("ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning)
  sys.exit(f"segjax: error: {reason}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from segjax.engine import host_memory  # pylint: disable=g-import-not-at-top  (after flags: JAX reads its own)
  host_memory.reuse_freed_memory()  # before any other thread allocates
  try:
    # Every value checked before any work: no jax.distributed, nothing written, no directory made.
    config_lib.validate(_CONFIG.value)
  except UserError as e:
    _fail(e)
  if _EVAL_ONLY.value:
    logs.for_reading(tensorflow=True)  # tf.data reads the eval split
  else:
    logs.for_training()
  # After flags: JAX reads its own.  pylint: disable=g-import-not-at-top
  import jax
  from segjax.engine import parallel, preemption
  try:
    parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _DISTRIBUTED.value)
    compilation.enable(_COMPILATION_CACHE.value)
    if jax.process_index() != 0:  # one progress log per run, from process 0; warnings from all
      logging.set_verbosity(logging.WARNING)
    from segjax.engine import evaluator, train  # after jax.distributed: the models start no backend
    if _EVAL_ONLY.value:
      step, scores = train.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value)
      if jax.process_index() == 0:  # what was asked for, at any verbosity
        print(f"Step {step} of {_WORKDIR.value}: {evaluator.shown(scores)}")
    else:
      train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    _fail(e)  # to stderr once, without a traceback
  except preemption.Stopped:  # its line is logged; the status tells a scheduler to requeue
    sys.exit(preemption.EXIT_RESUMABLE)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
