"""Trains and evaluates a segmentation model.

python -m segjax.main --config=configs/semantic.py --workdir=/tmp/run [--config.total_steps=2000]
python -m segjax.main --config=configs/semantic.py --workdir=/tmp/run --eval_only --config.eval.flip=True

Multi-host: the same command on every process, with --distributed where the cluster describes
itself (TPU VM pods, SLURM) or --coordinator_address/--num_processes/--process_id (see launch/).
"""
import difflib
import logging as std_logging  # absl's logging.WARNING is a verbosity (-1), not a record level
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from segjax import config as config_lib
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
flags.mark_flags_as_required(["config", "workdir"])


def _explain_override(argv):
  """Finds the --config file or --config.key override that config_flags could not apply."""
  path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if path is None or not os.path.isfile(path.split(":")[0]):
    return f"Config file '{path}' does not exist; pass --config=configs/semantic.py or another file."
  config = config_lib.load_config_file(path.split(":")[0])
  for arg in argv:
    match = re.match(r"--config\.([\w.]+)(=|$)", arg)
    if not match:
      continue
    node = config
    for key in match.group(1).split("."):
      if not hasattr(node, "keys") or key not in node:
        known = list(node.keys()) if hasattr(node, "keys") else []
        close = difflib.get_close_matches(key, known, n=1)
        if close:
          hint = f"did you mean '{close[0]}'?"
        elif known:
          hint = f"known keys here: {', '.join(sorted(known))}."
        else:
          hint = "this config sets no keys there; add the key to the config file to override it."
        return f"Unknown config key in {arg}: '{key}'; {hint}"
      node = node[key]
  return None


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, ValueError):
    reason = _explain_override(argv[1:])
    if reason is None:
      raise
    sys.exit(f"segjax: error: {reason}")


def _quiet_libraries(record):
  """Keeps Orbax's per-save INFO chatter out of the progress log; its warnings still show.

  On the inner handler: ABSLHandler.handle forwards to it without applying its own filters.
  """
  return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.get_absl_handler().python_handler.addFilter(_quiet_libraries)
  # After flags: JAX reads its own.  pylint: disable=g-import-not-at-top
  import jax
  from segjax import parallel
  try:
    parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _DISTRIBUTED.value)
    if jax.process_index() != 0:  # one progress log per run, from process 0; warnings from all
      logging.set_verbosity(logging.WARNING)
    from segjax import train  # after jax.distributed: importing the models must not start a backend
    (train.evaluate_checkpoint if _EVAL_ONLY.value else train.train_and_evaluate)(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    sys.exit(f"segjax: error: {e}")  # to stderr once, without a traceback


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
