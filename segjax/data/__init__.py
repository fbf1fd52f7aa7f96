"""Input data: the only package of segjax that imports TensorFlow."""
import importlib
import pkgutil

import tensorflow as tf

from segjax.data import datasets

# TensorFlow only feeds data: it must never take GPU memory that JAX needs.
tf.config.set_visible_devices([], "GPU")

for _module in pkgutil.iter_modules(datasets.__path__):  # each registers its builder and descriptor
  importlib.import_module(f"{datasets.__name__}.{_module.name}")

from segjax.data.pipeline import EvalData, resolve, train_batches  # pylint: disable=g-import-not-at-top,wrong-import-position
