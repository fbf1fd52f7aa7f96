"""tfds -> tf.data -> host batches of NumPy arrays, one slice of the data per process.

The training stream is a pure function of (config.seed, step): epoch e is shuffled with a seed made
from e, and each example is augmented with a seed made from its position. A run resumed at step s
therefore rebuilds exactly the batches an uninterrupted run would have seen, without saving
iterator state.
"""
import jax
import tensorflow as tf
import tensorflow_datasets as tfds

from segjax import heads
from segjax.data import augment, dataset
from segjax.engine import parallel
from segjax.errors import UserError

_AUTOTUNE = tf.data.AUTOTUNE
_TOO_LARGE = "eval image larger than config.input.eval_size"


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
        config.dataset.ignore_label)
    batch = {"image": image, "semantic": labels[..., 0]}
    # Targets after the crop, so that they are where the model sees them.
    batch.update(head.targets(labels[..., 0], labels[..., 1] if "instance" in keys else None, config))
    return batch

  ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch).skip(offset)
  ds = ds.map(prepare, num_parallel_calls=_AUTOTUNE, deterministic=True)
  ds = ds.batch(host_batch, drop_remainder=True).prefetch(2)
  for batch in ds.as_numpy_iterator():
    yield _check_labels(batch, config.dataset.num_classes, config.dataset.ignore_label)


class EvalData:
  """The eval split of this process at native size, padded to eval_size and to whole batches of
  equal count on every process.

  Each example carries its own `height` and `width`, so scoring cuts the padding away; padding
  examples have `valid` False and all-ignore labels, so metrics never count them.
  """

  def __init__(self, config, host_batch):
    builder = _builder(config)
    split, self.num_examples = _host_split(builder, config.dataset.eval_split)
    per_host = -(-self.num_examples // jax.process_count())
    self.num_batches = -(-per_host // host_batch)
    features = builder.info.features
    (height, width), ignore = config.input.eval_size, config.dataset.ignore_label
    self._builder, self._split, self._size = builder, config.dataset.eval_split, config.input.eval_size
    static = features["image"].shape[:2]  # known for datasets of one image size
    if None not in static and (static[0] > height or static[1] > width):
      raise self._too_large()
    keys = _label_keys(config)
    decoders = {k: tfds.decode.SkipDecoding() for k in ("image",) + keys}
    # Where this process's slice starts in the split (tfds gives the first slices one more example).
    first = sum(builder.info.splits[s].num_examples
                for s in tfds.even_splits(config.dataset.eval_split, n=jax.process_count())[:jax.process_index()])

    def prepare(index, example):
      image, labels = _decode(features, example, keys)
      shape = tf.shape(image)
      with tf.control_dependencies([tf.debugging.assert_less_equal(shape[:2], tf.constant([height, width]),
                                                                   message=_TOO_LARGE)]):
        image = tf.image.pad_to_bounding_box(image, 0, 0, height, width)
        labels = tf.pad(labels, [[0, height - shape[0]], [0, width - shape[1]], [0, 0]],
                        constant_values=ignore)
      # The dataset's own id where it has one, else the position in the split: COCO files need
      # one id per image.
      image_id = example["image_id"] if "image_id" in features else first + index
      out = {"image": image, "valid": True, "image_id": tf.cast(image_id, tf.int64),
             "height": shape[0], "width": shape[1]}
      out.update({k: labels[..., i] for i, k in enumerate(keys)})
      return out

    # Decoded anew at each eval: a cache of decoded, padded images would hold tens of GB (COCO val).
    real = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders).enumerate().map(
        prepare, num_parallel_calls=_AUTOTUNE)
    pad = {"image": tf.zeros([height, width, 3], tf.uint8), "valid": False,
           "image_id": tf.constant(-1, tf.int64), "height": 0, "width": 0}
    pad.update({k: tf.fill([height, width], ignore) for k in keys})
    ds = real.concatenate(tf.data.Dataset.from_tensors(pad).repeat()).take(self.num_batches * host_batch)
    ds = ds.map(lambda ex: dict(ex, image=tf.cast(ex["image"], tf.float32) / 255.0))
    self._ds = ds.batch(host_batch).prefetch(2)
    self._num_classes, self._ignore = config.dataset.num_classes, ignore

  def _too_large(self):
    return UserError(f"An image of split '{self._split}' is larger than config.input.eval_size="
                     f"{tuple(self._size)}; raise it to the split's largest image size.")

  def __iter__(self):
    try:
      for batch in self._ds.as_numpy_iterator():
        yield _check_labels(batch, self._num_classes, self._ignore)
    except tf.errors.InvalidArgumentError as e:
      if _TOO_LARGE not in str(e):
        raise
      raise self._too_large() from e

  def file_names(self):
    """{image_id: file name} of the whole eval split, for the official output files."""
    if "file_name" not in self._builder.info.features:
      return {}
    decoders = {k: tfds.decode.SkipDecoding() for k in self._builder.info.features
                if isinstance(self._builder.info.features[k], tfds.features.Image)}
    records = self._builder.as_dataset(split=self._split, decoders=decoders)
    return {int(i): n.decode() for i, n in records.map(lambda ex: (ex["image_id"], ex["file_name"]))
            .as_numpy_iterator()}
