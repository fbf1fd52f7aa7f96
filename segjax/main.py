"""Trains and evaluates a segmentation model.

python -m segjax.main --config=configs/semantic.py --workdir=/tmp/run [--config.total_steps=2000]
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
  except (AttributeError, KeyError, ValueError) as e:
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
  from segjax import train  # pylint: disable=g-import-not-at-top  (after flags: JAX reads its own)
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    logging.error("%s", e)
    sys.exit(f"segjax: error: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
