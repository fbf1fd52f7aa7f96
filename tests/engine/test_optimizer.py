"""Learning-rate schedules: warm-up and decay against their formulas, step by step."""
import math

import ml_collections
import pytest

from segjax.engine import optimizer
from segjax.errors import UserError


def _schedule(name, warmup=4, total=14, lr=0.1, power=0.9):
  return optimizer.make_schedule(ml_collections.ConfigDict(dict(
      schedule=name, lr=lr, warmup_steps=warmup, total_steps=total, poly_power=power)))


def _expected(name, step, warmup=4, total=14, lr=0.1, power=0.9):
  if step < warmup:
    return lr * step / warmup
  t = (step - warmup) / (total - warmup)
  return {"constant": lr, "cosine": lr * 0.5 * (1 + math.cos(math.pi * t)),
          "poly": lr * (1 - t) ** power}[name]


@pytest.mark.parametrize("name", ["constant", "cosine", "poly"])
def test_warmup_then_decay(name):
  schedule = _schedule(name)
  for step in range(15):
    assert float(schedule(step)) == pytest.approx(_expected(name, step), abs=1e-7), step
  assert float(schedule(2)) == pytest.approx(0.05)  # halfway up the warm-up
  if name != "constant":
    assert float(schedule(14)) == pytest.approx(0.0, abs=1e-7)  # fully decayed at the last step


def test_no_warmup_starts_at_the_peak():
  schedule = _schedule("cosine", warmup=0, total=10)
  assert float(schedule(0)) == pytest.approx(0.1)
  assert float(schedule(5)) == pytest.approx(0.05)


def test_unknown_schedule_is_named():
  with pytest.raises(UserError, match="Unknown schedule 'linear'"):
    _schedule("linear")
