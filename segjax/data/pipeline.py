"""tfds -> tf.data -> host batches of NumPy arrays, one slice of the data per process.

The training stream is a pure function of (config.seed, step): epoch e is shuffled with a seed made
from e, and each example is augmented with a seed made from its position. A run resumed at step s
therefore rebuilds exactly the batches an uninterrupted run would have seen, without saving
iterator state.
"""
from absl import logging
import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from segjax import heads
from segjax.data import augment, buckets, dataset
from segjax.engine import inference, parallel
from segjax.errors import UserError

_AUTOTUNE = tf.data.AUTOTUNE


def _label_keys(config):
  """Label maps the run needs: the ones its head makes targets from."""
  return heads.get(config).label_keys


def _builder(config):
  """The dataset's tfds builder, built on first use from its manual_dir (the built-in scenes are
  drawn): process 0 builds first; the others then find it on a shared filesystem or build their own."""
  descriptor, name = dataset.get(config.dataset.name), dataset.tfds_name(config.dataset.name)
  try:
    builder = tfds.builder(name, data_dir=config.dataset.data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise UserError(f"Dataset '{config.dataset.name}' has no tfds builder '{name}' "
                    "(config.dataset.name).") from e
  manual_dir = config.dataset.manual_dir
  download = tfds.download.DownloadConfig(manual_dir=manual_dir)

  def build():
    if builder.is_prepared():
      return
    if descriptor.needs_manual_dir and not manual_dir:
      raise UserError(f"Dataset '{config.dataset.name}' is not built in {builder.data_dir}; set "
                      "config.dataset.manual_dir to the folder of its official files to build it "
                      f"there (layout: segjax/data/datasets/{descriptor.name}.py).")
    builder.download_and_prepare(download_config=download)

  # Every process takes this path, whatever it finds on its disk, so all meet at the same collective.
  parallel.on_process_zero(build, f"build dataset '{name}'")
  if not builder.is_prepared():
    builder = tfds.builder(name, data_dir=config.dataset.data_dir)  # reads what process 0 wrote
    if not builder.is_prepared():  # a data_dir of its own: builds its copy
      build()
  return builder


def _pair(value, key):
  value = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
  if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
    raise UserError(f"config.{key}={value} must be (height, width), two positive integers.")
  return value


def _tuples(value):
  return tuple(map(_tuples, value)) if isinstance(value, (tuple, list)) else value


def resolve(config):
  """(config, class_names): a copy of `config` with every value that follows from the data taken
  from the dataset's descriptor, building the dataset if it is not built yet.

  A config may repeat such a value but not contradict it: that would train a model whose classes
  are not the data's.
  """
  descriptor = dataset.get(config.dataset.name)
  builder = _builder(config)
  meta = builder.info.metadata or {}
  names = descriptor.class_names or meta.get("class_names")
  things = descriptor.thing_classes if descriptor.thing_classes is not None else meta.get("thing_classes", ())
  if "instance" in _label_keys(config) and ("instance" not in builder.info.features
                                            or meta.get("has_instances", True) is False):
    raise UserError(f"Dataset '{config.dataset.name}' has no instance labels, which head "
                    f"'{config.model.head}' learns from; choose a semantic head (config.model.head) or a "
                    "dataset with instances.")
  config = config.copy_and_resolve_references()
  from_data = {"num_classes": len(names), "thing_classes": tuple(int(c) for c in things),
               "ignore_label": descriptor.ignore_label, "label_divisor": descriptor.label_divisor,
               "label_ids": tuple(descriptor.official_ids or range(len(names))),
               "colormap": tuple(map(tuple, descriptor.colormap)) if descriptor.colormap else None,
               "image_ids_by_name": descriptor.image_ids_by_name}
  with config.unlocked():
    for key, value in from_data.items():
      given = config.dataset[key]
      if given is not None and _tuples(given) != value:
        raise UserError(f"config.dataset.{key}={given} but dataset '{config.dataset.name}' has "
                        f"{value}; leave it unset, it comes from the dataset.")
      config.dataset[key] = value
    for key in ("crop_size", "eval_size"):
      given = config.input[key]
      config.input[key] = _pair(getattr(descriptor, key) if given is None else given, f"input.{key}")
  return config, list(names)


def _host_split(builder, split):
  """This process's slice of `split` and the size of the whole split; "train[:90%]" works too."""
  try:
    size = builder.info.splits[split].num_examples
  except (KeyError, ValueError) as e:
    raise UserError(f"Dataset '{builder.info.full_name}' has no split '{split}'; it has "
                    f"{', '.join(builder.info.splits)} (slices such as 'train[:90%]' work too).") from e
  return tfds.split_for_jax_process(split), size


def _decode(features, example, label_keys):
  """Decodes the image and label maps that skip_decoding left encoded; labels int32 (H, W, K)."""
  image = features["image"].decode_example(example["image"])
  labels = tf.concat([tf.cast(features[k].decode_example(example[k]), tf.int32) for k in label_keys],
                     axis=-1)
  return image, labels


def _check_labels(batch, num_classes, ignore_label):
  labels = batch["semantic"]
  bad = (labels >= num_classes) & (labels != ignore_label)
  if bad.any():
    raise UserError(f"Label {int(labels[bad].max())} in the data is out of range for its {num_classes} "
                    f"classes (0..{num_classes - 1}, ignore {ignore_label}); rebuild the dataset from "
                    "correct files (delete it from config.dataset.data_dir).")
  return batch


def train_batches(config, start_step, host_batch):
  """Yields host batches {"image": float32 (B, H, W, 3) in [0, 1], "semantic": int32 (B, H, W)},
  (H, W) = config.input.crop_size, plus the targets of the config's head. `config` is resolved (see
  `resolve`)."""
  builder = _builder(config)
  split, size = _host_split(builder, config.dataset.train_split)
  keys = ("image",) + _label_keys(config)
  decoders = {k: tfds.decode.SkipDecoding() for k in keys}
  records = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders,
                               read_config=tfds.ReadConfig(interleave_cycle_length=1))
  records = records.map(lambda ex: {k: ex[k] for k in keys})
  size = size // jax.process_count()  # at least this many on every process; batches span epochs
  if size < 1:
    raise UserError(f"Split '{config.dataset.train_split}' has fewer examples than the "
                    f"{jax.process_count()} processes; choose a larger split.")
  start_epoch, offset = divmod(start_step * host_batch, size)
  buffer = min(size, config.input.shuffle_buffer)
  base_seed = config.seed * 1_000_003

  def epoch(e):
    seed = base_seed + e
    shuffled = records.shuffle(buffer, seed=seed, reshuffle_each_iteration=False).take(size)
    # Example i of this process: its own seed on every process, the same on a resume.
    return shuffled.enumerate().map(
        lambda i, ex: (tf.stack([seed, i * jax.process_count() + jax.process_index()]), ex))

  features = builder.info.features
  inp, head = config.input, heads.get(config)

  def prepare(seed, example):
    image, labels = _decode(features, example, keys[1:])
    image, labels = augment.scale_crop_flip(
        image, labels, seed, tuple(inp.crop_size), inp.min_scale, inp.max_scale, inp.flip,
        config.dataset.ignore_label, tuple(inp.base_size or ()))
    batch = {"image": image, "semantic": labels[..., 0]}
    # Targets after the crop, so that they are where the model sees them.
    batch.update(head.targets(labels[..., 0], labels[..., 1] if "instance" in keys else None, config))
    return batch

  ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch).skip(offset)
  ds = ds.map(prepare, num_parallel_calls=_AUTOTUNE, deterministic=True)
  ds = ds.batch(host_batch, drop_remainder=True).prefetch(2)
  for batch in ds.as_numpy_iterator():
    yield _check_labels(batch, config.dataset.num_classes, config.dataset.ignore_label)


def _image_sizes(builder, split):
  """(height, width) of each image of `split`, in order, from the encoded images' headers."""
  features = builder.info.features
  static = features["image"].shape[:2]
  if None not in static:  # a dataset of one image size says so
    return [tuple(static)] * builder.info.splits[split].num_examples
  decoders = {k: tfds.decode.SkipDecoding() for k in features if isinstance(features[k], tfds.features.Image)}
  images = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders).map(lambda ex: ex["image"])
  return [buckets.encoded_size(encoded) for encoded in images.as_numpy_iterator()]


class EvalData:
  """The eval split at its images' own sizes, or resized to config.eval's base size, grouped by
  size into at most config.eval.buckets canvases (segjax/data/buckets.py), each bucket split over
  the processes in whole global batches, its last batch padded.

  Each example carries its own `height` and `width`, the size it is scored at, and after a base-size
  resize its `input_height` and `input_width`, so scoring cuts the padding away and the eval step
  resizes the outputs back; padding examples have `valid` False and all-ignore labels, so metrics
  never count them. Every process plans from the whole split's sizes, so all compile the same shapes.
  """

  def __init__(self, config, host_batch):
    builder = _builder(config)
    self._builder, self._split = builder, config.dataset.eval_split
    _, self.num_examples = _host_split(builder, self._split)
    features, keys, base = builder.info.features, _label_keys(config), inference.eval_base_size(config)
    sizes = _image_sizes(builder, self._split)
    inputs = [inference.base_scaled(size, base) for size in sizes]
    self.buckets = buckets.plan(inputs, sizes, config.eval.buckets, inference.CANVAS_MULTIPLE)
    self.padded_share = buckets.padded_share(inputs, self.buckets)
    logging.info("Eval: %d images in %d canvases %s, %.1f%% of their pixels padding.", len(sizes), len(self.buckets),
                 ", ".join(f"{h}x{w}" for h, w in (b.canvas for b in self.buckets)), 100 * self.padded_share)
    ignore = config.dataset.ignore_label
    resized = tf.constant(np.asarray(inputs, np.int32).reshape(-1, 2))
    decoders = {k: tfds.decode.SkipDecoding() for k in ("image",) + keys}
    records = builder.as_dataset(split=self._split, shuffle_files=False, decoders=decoders).enumerate()
    processes, me = jax.process_count(), jax.process_index()
    per_batch = host_batch * processes

    def bucket_data(bucket):
      """This process's rows of the bucket's global batches, then padding examples."""
      # Without a resize the outputs are the labels' size: on the model's canvas, as the labels.
      (height, width), (label_height, label_width) = bucket.canvas, bucket.label_canvas if base else bucket.canvas
      batches = -(-len(bucket.indices) // per_batch)
      mine = np.zeros(len(sizes), bool)
      for j in range(batches):
        mine[list(bucket.indices[j * per_batch + me * host_batch:j * per_batch + (me + 1) * host_batch])] = True
      mine = tf.constant(mine)

      def prepare(index, example):
        image, labels = _decode(features, example, keys)
        shape = tf.shape(image)
        image = tf.cast(image, tf.float32) / 255.0
        out = {"valid": True, "height": shape[0], "width": shape[1],
               # The dataset's own id where it has one, else the position in the split: COCO files
               # need one id per image.
               "image_id": tf.cast(example["image_id"] if "image_id" in features else index, tf.int64)}
        if base:
          size = tf.gather(resized, index)
          image = tf.image.resize(image, size, "bilinear")  # no antialiasing, as mmcv's imresize
          out.update(input_height=size[0], input_width=size[1])
        out["image"] = tf.image.pad_to_bounding_box(image, 0, 0, height, width)
        labels = tf.pad(labels, [[0, label_height - shape[0]], [0, label_width - shape[1]], [0, 0]],
                        constant_values=ignore)
        out.update({k: labels[..., i] for i, k in enumerate(keys)})
        return out

      pad = {"valid": False, "height": 0, "width": 0, "image_id": tf.constant(-1, tf.int64),
             **({"input_height": 0, "input_width": 0} if base else {}),
             "image": tf.zeros([height, width, 3], tf.float32)}
      pad.update({k: tf.fill([label_height, label_width], ignore) for k in keys})
      # Decoded anew at each eval: a cache of decoded images would hold tens of GB (COCO val).
      real = records.filter(lambda index, _: tf.gather(mine, index)).map(prepare, num_parallel_calls=_AUTOTUNE)
      return real.concatenate(tf.data.Dataset.from_tensors(pad).repeat()).take(batches * host_batch), batches

    if not self.buckets:
      raise UserError(f"Split '{self._split}' of dataset '{config.dataset.name}' has no examples to evaluate on "
                      "(config.dataset.eval_split).")
    parts = [bucket_data(bucket) for bucket in self.buckets]
    self.num_batches = sum(batches for _, batches in parts)
    ds = parts[0][0]
    for part, _ in parts[1:]:
      ds = ds.concatenate(part)
    self._ds = ds.batch(host_batch).prefetch(2)
    self._num_classes, self._ignore = config.dataset.num_classes, ignore

  def __iter__(self):
    for batch in self._ds.as_numpy_iterator():
      yield _check_labels(batch, self._num_classes, self._ignore)

  def file_names(self):
    """{image_id: file name} of the whole eval split, for the official output files."""
    if "file_name" not in self._builder.info.features:
      return {}
    decoders = {k: tfds.decode.SkipDecoding() for k in self._builder.info.features
                if isinstance(self._builder.info.features[k], tfds.features.Image)}
    records = self._builder.as_dataset(split=self._split, decoders=decoders)
    return {int(i): n.decode() for i, n in records.map(lambda ex: (ex["image_id"], ex["file_name"]))
            .as_numpy_iterator()}
