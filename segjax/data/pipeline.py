"""tfds -> tf.data -> host batches of NumPy arrays, one slice of the data per process.

The training stream is a pure function of (config.seed, step): epoch e is shuffled with a seed made
from e, and each example is augmented with a seed made from its position. A run resumed at step s
therefore rebuilds exactly the batches an uninterrupted run would have seen, without saving
iterator state.
"""
import jax
import tensorflow as tf
import tensorflow_datasets as tfds

from segjax import parallel
from segjax.data import augment, targets
from segjax.errors import UserError

_LOCAL = ("synthetic_scenes",)  # builders that need no download: prepared on first use
_AUTOTUNE = tf.data.AUTOTUNE


def _label_keys(config):
  """Label maps the run needs: the instance-id map only when the model has an instance head."""
  return ("semantic", "instance") if config.model.instance_head else ("semantic",)


def _builder(config):
  name = config.dataset.name
  try:
    builder = tfds.builder(name, data_dir=config.dataset.data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise UserError(f"Unknown dataset '{name}': use a tfds name such as 'synthetic_scenes/default' "
                    f"(config.dataset.name).") from e
  if name.split("/")[0] in _LOCAL:
    # Process 0 draws it first; the others then find it on a shared filesystem or draw their own.
    prepared = builder.is_prepared()
    if not prepared and jax.process_index() == 0:
      builder.download_and_prepare()
      prepared = True
    parallel.sync(f"prepared {name}")
    if not prepared:
      builder = tfds.builder(name, data_dir=config.dataset.data_dir)  # reads what process 0 wrote
      if not builder.is_prepared():
        builder.download_and_prepare()
  elif not builder.is_prepared():
    raise UserError(f"Dataset '{name}' is not prepared in {builder.data_dir}; run "
                    f"`tfds build {name} --data_dir=DIR` and set config.dataset.data_dir=DIR.")
  return builder


def dataset_info(config):
  """Prepares the dataset if it is the built-in one, checks the config against it, returns tfds info."""
  info = _builder(config).info
  names = info.metadata.get("class_names") if info.metadata else None
  if names is not None and len(names) != config.dataset.num_classes:
    raise UserError(f"config.dataset.num_classes={config.dataset.num_classes} but dataset "
                    f"'{config.dataset.name}' has {len(names)} classes; set it to {len(names)}.")
  return info


def _host_split(builder, split):
  if split not in builder.info.splits:
    raise UserError(f"Dataset '{builder.info.full_name}' has no split '{split}'; "
                    f"it has {', '.join(builder.info.splits)}.")
  return tfds.split_for_jax_process(split)


def _decode(features, example, label_keys):
  """Decodes the image and label maps that skip_decoding left encoded."""
  image = features["image"].decode_example(example["image"])
  labels = tf.concat([features[k].decode_example(example[k]) for k in label_keys], axis=-1)
  return image, labels


def _check_labels(batch, num_classes, ignore_label):
  labels = batch["semantic"]
  bad = (labels >= num_classes) & (labels != ignore_label)
  if bad.any():
    raise UserError(f"Label {int(labels[bad].max())} is out of range for {num_classes} classes "
                    f"(0..{num_classes - 1}, ignore {ignore_label}); check config.dataset.num_classes.")
  return batch


def train_batches(config, start_step, host_batch):
  """Yields host batches {"image": float32 (B, S, S, 3) in [0, 1], "semantic": int32 (B, S, S)},
  plus centre and offset targets and their weights when the model has an instance head."""
  builder = _builder(config)
  split = _host_split(builder, config.dataset.train_split)
  keys = ("image",) + _label_keys(config)
  decoders = {k: tfds.decode.SkipDecoding() for k in keys}
  records = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders,
                               read_config=tfds.ReadConfig(interleave_cycle_length=1))
  records = records.map(lambda ex: {k: ex[k] for k in keys})
  size = builder.info.splits[split].num_examples
  if size < host_batch:
    raise UserError(f"Split '{split}' has {size} examples, fewer than one host batch of {host_batch}.")
  start_epoch, offset = divmod(start_step * host_batch, size)
  buffer = min(size, config.input.shuffle_buffer)
  base_seed = config.seed * 1_000_003

  def epoch(e):
    seed = base_seed + e
    shuffled = records.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
    return shuffled.enumerate().map(lambda i, ex: (tf.stack([seed, i]), ex))

  features = builder.info.features
  inp = config.input

  def prepare(seed, example):
    image, labels = _decode(features, example, keys[1:])
    image, labels = augment.scale_crop_flip(
        image, labels, seed, inp.crop_size, inp.min_scale, inp.max_scale, inp.flip,
        config.dataset.ignore_label)
    labels = tf.cast(labels, tf.int32)
    batch = {"image": image, "semantic": labels[..., 0]}
    if config.model.instance_head:  # targets after the crop, so centres are where the model sees them
      batch.update(targets.center_offset_targets(
          labels[..., 0], labels[..., 1], tuple(config.dataset.thing_classes), config.loss.center_sigma,
          config.dataset.ignore_label, config.loss.max_instances))
    return batch

  ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch).skip(offset)
  ds = ds.map(prepare, num_parallel_calls=_AUTOTUNE, deterministic=True)
  ds = ds.batch(host_batch, drop_remainder=True).prefetch(2)
  for batch in ds.as_numpy_iterator():
    yield _check_labels(batch, config.dataset.num_classes, config.dataset.ignore_label)


class EvalData:
  """The eval split of this process, padded to whole batches of equal count on every process.

  Padding examples have `valid` False and all-ignore labels, so metrics never count them.
  """

  def __init__(self, config, host_batch):
    builder = _builder(config)
    split = _host_split(builder, config.dataset.eval_split)
    self.num_examples = builder.info.splits[config.dataset.eval_split].num_examples
    per_host = -(-self.num_examples // jax.process_count())
    self.num_batches = -(-per_host // host_batch)
    features = builder.info.features
    size, ignore = config.input.eval_size, config.dataset.ignore_label
    keys = _label_keys(config)
    decoders = {k: tfds.decode.SkipDecoding() for k in ("image",) + keys}
    # Where this process's slice starts in the split (tfds gives the first slices one more example).
    first = sum(builder.info.splits[s].num_examples
                for s in tfds.even_splits(config.dataset.eval_split, n=jax.process_count())[:jax.process_index()])

    def prepare(index, example):
      image, labels = augment.pad_to(*_decode(features, example, keys), size, ignore)
      # The dataset's own id where it has one, else the position in the split: COCO files need
      # one id per image.
      image_id = example["image_id"] if "image_id" in features else first + index
      out = {"image": tf.cast(image, tf.uint8), "valid": True, "image_id": tf.cast(image_id, tf.int64)}
      out.update({k: labels[..., i] for i, k in enumerate(keys)})
      return out

    real = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders).enumerate().map(
        prepare, num_parallel_calls=_AUTOTUNE).cache()
    pad = {"image": tf.zeros([size, size, 3], tf.uint8), "valid": False,
           "image_id": tf.constant(-1, tf.int64)}
    pad.update({k: tf.fill([size, size], tf.constant(ignore, tf.uint8)) for k in keys})
    ds = real.concatenate(tf.data.Dataset.from_tensors(pad).repeat()).take(self.num_batches * host_batch)

    def scale(ex):
      out = dict(ex, image=tf.cast(ex["image"], tf.float32) / 255.0)
      out.update({k: tf.cast(ex[k], tf.int32) for k in keys})
      return out

    self._ds = ds.map(scale).batch(host_batch).prefetch(2)
    self._num_classes, self._ignore = config.dataset.num_classes, ignore

  def __iter__(self):
    for batch in self._ds.as_numpy_iterator():
      yield _check_labels(batch, self._num_classes, self._ignore)
