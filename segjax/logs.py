"""What segjax's programs print: their own lines, and the libraries' (Orbax, JAX, TensorFlow) only
where they help or are asked for with --verbosity (-v 0 for INFO, -v 1 for DEBUG)."""
import logging as std_logging  # absl's logging.WARNING is a verbosity (-1), not a record level
import os
import sys
import tempfile

from absl import flags, logging

_SEGJAX = os.path.dirname(os.path.abspath(__file__)) + os.sep


def for_training():
  """Training keeps its progress lines (INFO) and everyone's warnings, without Orbax's per-save
  chatter or the echoes of a failed save that the run says once itself."""
  logging.get_absl_handler().python_handler.addFilter(_training_records)
  sys.unraisablehook = _quiet_unraisable


def for_reading(tensorflow=False):
  """Predict, export, convert and --eval_only print what was asked for and segjax's own sentences;
  the libraries' lines (Orbax's dozens for one restore, TensorFlow's start-up) only with
  --verbosity, or when they are errors. A program that will use TensorFlow says so: it is imported
  here, before anything else does."""
  if flags.FLAGS["verbosity"].present:
    return
  logging.set_verbosity(logging.WARNING)
  logging.get_absl_handler().python_handler.addFilter(_reading_records)
  if tensorflow:
    _import_tensorflow_quietly()


def _import_tensorflow_quietly():
  """TensorFlow 2.21's C++ start-up lines (oneDNN's, "All log messages before absl::InitializeLog()")
  ignore TF_CPP_MIN_LOG_LEVEL: the standard error goes to a file while it is imported, and what it
  said there is shown only when the import fails."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as said:
    os.dup2(said.fileno(), 2)
    try:
      import tensorflow  # pylint: disable=g-import-not-at-top,unused-import,import-outside-toplevel
      failure = None
    except BaseException as e:  # pylint: disable=broad-except  (what it said is shown first)
      failure = e
    finally:
      os.dup2(saved, 2)
      os.close(saved)
    if failure is not None:
      said.seek(0)
      sys.stderr.write(said.read().decode(errors="replace"))
      if not isinstance(failure, ImportError):  # an ImportError is said by the code that needs it
        raise failure


def _reading_records(record):
  """On the inner handler: ABSLHandler.handle forwards to it without applying its own filters."""
  if record.pathname.startswith(_SEGJAX):
    return True
  return record.levelno >= std_logging.ERROR and not record.exc_info


def _training_records(record):
  """Orbax's warnings and errors show, but not the traceback each of its writer threads logs for a
  failed write, nor asyncio's echo of them (each task's, future's and gather's "exception was never
  retrieved", logged when they are collected, often after the run said what failed)."""
  if record.name == "asyncio" and "exception was never retrieved" in record.getMessage():
    return False
  if "/orbax/" not in record.pathname:
    return True
  return record.levelno >= std_logging.WARNING and not record.exc_info


def _quiet_unraisable(unraisable):
  """Drops "Event loop is closed", raised where Python can only print it, by an Orbax writer thread
  that outlived the event loop of a failed save: the failure reaches the run, which says it once.
  Anything else goes to Python's own hook."""
  if isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed":
    return
  sys.__unraisablehook__(unraisable)
