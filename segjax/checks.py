"""Tests of config values, shared by the schema's check (segjax.config) and the eval protocol's
(segjax.engine.inference)."""
import math
import numbers


def is_int(v):
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v):
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def is_pair(v):
  return isinstance(v, (tuple, list)) and len(v) == 2 and all(is_int(n) and n >= 1 for n in v)


def shown(value):
  """A value as a sentence shows it: a list as a tuple, a string quoted."""
  return tuple(value) if isinstance(value, (tuple, list)) else repr(value)
