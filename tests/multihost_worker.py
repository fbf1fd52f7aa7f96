"""A few train steps on fixed global batches, the same whatever the number of processes and devices;
then the evaluator's figures for predictions with known flaws (oracle.py) on the tiny eval split.

test_multihost runs it as a script under launch/local.py (several processes) and calls `run` and
`oracle.score` in-process (one process), then compares losses, parameters and figures.

    python tests/multihost_worker.py OUT.npz DATA_DIR WEIGHTS   # process 0 writes what it measured
"""
import os
import sys

import numpy as np

STEPS = 3


def config(init_from=None):
  """The tiny model with SGD: Adam divides by the root of tiny second moments, which turns float
  round-off in the gradient sums (summed in another order on another device count) into visible
  parameter differences; SGD keeps the comparison about the sums themselves. `init_from`: a
  weights file for its backbone, which every process then reads."""
  from tiny_configs import tiny_config  # pylint: disable=g-import-not-at-top
  return tiny_config("", **{"optimizer.name": "sgd", "optimizer.lr": 0.05,
                            "model.init_from.path": init_from})


def global_batch(config, step):
  """The whole batch of `step`, drawn from a seed: every process can make it and take its rows."""
  rng = np.random.default_rng(step)
  n, size = config.batch_size, tuple(config.input.crop_size)
  return {"image": rng.random((n, *size, 3), dtype=np.float32),
          "semantic": rng.integers(0, config.dataset.num_classes, (n, *size), dtype=np.int32)}


def run(config, mesh, steps=STEPS):
  """Losses per step, and the final parameters and BatchNorm statistics flattened by path."""
  import jax  # pylint: disable=g-import-not-at-top  (after jax.distributed in the script)
  from segjax.engine import parallel, train
  from segjax.weights import pretrained  # pylint: disable=g-import-not-at-top

  _, train_fn, _, state = train.setup(config, mesh)
  if config.model.init_from.path:
    state = state.replace(**pretrained.load({"params": state.params, "batch_stats": state.batch_stats},
                                            config.model))
  rows = parallel.host_batch_size(config.batch_size)
  first = jax.process_index() * rows
  losses = []
  for step in range(steps):
    local = {k: v[first:first + rows] for k, v in global_batch(config, step).items()}
    state, metrics = train_fn(state, parallel.to_global(local, mesh))
    losses.append(float(metrics["loss"]))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return np.asarray(losses), {jax.tree_util.keystr(path): np.asarray(leaf)
                              for path, leaf in jax.tree_util.tree_leaves_with_path(variables)}


def main(out_path, data_dir, init_from):
  from segjax.engine import parallel  # pylint: disable=g-import-not-at-top
  parallel.initialize()  # from the SEGJAX_* variables that launch/local.py sets
  import jax  # pylint: disable=g-import-not-at-top
  import oracle  # pylint: disable=g-import-not-at-top
  from tiny_configs import tiny_panoptic_config  # pylint: disable=g-import-not-at-top
  losses, variables = run(config(init_from), parallel.make_mesh())
  scores = oracle.score(tiny_panoptic_config(data_dir), os.path.join(os.path.dirname(out_path), "eval"))
  if jax.process_index() == 0:
    np.savez(out_path, losses=losses, num_devices=jax.device_count(),
             num_processes=jax.process_count(), **{"var" + k: v for k, v in variables.items()},
             **{"score_" + k: v for k, v in scores.items()})


if __name__ == "__main__":
  main(*sys.argv[1:])
