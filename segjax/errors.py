"""The one exception for mistakes a user can fix: `main` prints its sentence and exits non-zero."""


class UserError(Exception):
  """Bad input (config, data, devices, workdir, checkpoint), explained in one sentence."""


def cause(e):
  """`Type: first line` of an exception from a library, short enough to sit inside a sentence."""
  first = str(e).splitlines()[0][:160] if str(e).strip() else "no detail"
  return f"{type(e).__name__}: {first}"


def some(items, noun):
  """"'a'" or "'a' and 3 more tensors": the first of a list that a sentence names."""
  return f"'{items[0]}'" + (f" and {len(items) - 1} more {noun}" if len(items) > 1 else "")
