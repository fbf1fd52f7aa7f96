"""Input data: the only package of segjax that imports TensorFlow."""
from segjax.data import synthetic_scenes  # registers the built-in dataset with tfds
from segjax.data.pipeline import EvalData, dataset_info, train_batches
