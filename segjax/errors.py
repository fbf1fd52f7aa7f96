"""The one exception for mistakes a user can fix: `main` prints its sentence and exits non-zero."""
import re

# Terminal escape sequences (PyTorch's load errors set bold with them) and other control characters:
# in a sentence they would be printed as codes, or restyle the user's terminal.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")


class UserError(Exception):
  """Bad input (config, data, devices, workdir, checkpoint), explained in one sentence."""


def cause(e):
  """`Type: first line` of an exception from a library, short enough to sit inside a sentence, and
  without the terminal's escape codes."""
  text = _CONTROL.sub("", str(e))
  first = text.strip().splitlines()[0][:160] if text.strip() else "no detail"
  return f"{type(e).__name__}: {first}"


def some(items, noun):
  """"'a'" or "'a' and 3 more tensors": the first of a list that a sentence names."""
  return f"'{items[0]}'" + (f" and {len(items) - 1} more {noun}" if len(items) > 1 else "")
