"""Tests of config values and rules made of them, shared by the schema's check (segjax.config),
the heads' own keys (segjax.heads) and the eval protocol's check (segjax.engine.inference)."""
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


# Rules: (test, what to give), as the schema's check (segjax.config) and heads' own keys use them.
def ints_from(low):
  return (lambda v: is_int(v) and v >= low), f"give an integer >= {low}"


def number_in(test, accepted):
  return (lambda v: is_number(v) and test(v)), f"give a number {accepted}"


def choice(*names):
  return (lambda v: v in names), f"choose {', '.join(names[:-1])} or {names[-1]}"


UNIT = number_in(lambda v: 0 <= v <= 1, "in [0, 1]")
WEIGHT = number_in(lambda v: v >= 0, ">= 0")
AT_LEAST_1 = ints_from(1)
