"""WORKDIR/curves.png: training loss and eval metrics against step, read back from metrics.jsonl."""
import json
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

EVAL_KEYS = ("miou", "pixel_acc", "mask_ap", "mask_ap50", "pq", "sq", "rq")


def plot_curves(workdir):
  """Draws curves.png beside metrics.jsonl and returns its path (None when nothing was logged)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    fig = draw([json.loads(line) for line in f if line.strip()])
  out = os.path.join(workdir, "curves.png")
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def draw(records):
  """The figure of metrics.jsonl's records: training loss on the left, eval metrics on the right."""
  train = [r for r in records if r["kind"] == "train"]
  evals = [r for r in records if r["kind"] == "eval"]
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  left.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:red")
  left.set(title="training loss", xlabel="step", yscale="log")
  for key in EVAL_KEYS:
    points = [(r["step"], r[key]) for r in evals if key in r]
    if points:
      right.plot(*zip(*points), marker="o", label=key)
  right.set(title="eval", xlabel="step", ylim=(0, 1))
  if evals:
    right.legend(loc="lower right")
  for ax in (left, right):
    ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig
