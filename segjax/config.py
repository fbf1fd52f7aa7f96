"""The config schema: every key a recipe may set, with its default, so a typo is caught by name, and
`validate`, which checks each value's type and range and the values that must agree before any work.
segjax's own keys are here; a head's own keys (its decoders, loss weights, post-processing) are its
Head.defaults and Head.rules, in the schema of a config that names it (segjax/head_keys.py)."""
import importlib.util

import ml_collections
from ml_collections import config_dict

from segjax import checks, head_keys
from segjax.errors import UserError


def base_config(head="semantic"):
  """Defaults for every key of a config of `head` (a name in segjax.heads.HEADS); recipes in
  configs/ start from this and change what they need."""
  return set_head(own_keys(), head)


def own_keys():
  """segjax's own keys with their defaults, no head's: a head's keys come with set_head."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = ml_collections.ConfigDict(dict(
      name="synthetic_scenes/default",  # a descriptor in segjax/data/datasets/, "/variant" optional
      data_dir=config_dict.placeholder(str),  # tfds default (~/tensorflow_datasets) when unset
      manual_dir=config_dict.placeholder(str),  # the dataset's official files, read on first use
      train_split="train",  # any tfds split, e.g. "train[:90%]"
      eval_split="validation",
      # From the dataset's descriptor; a config may only repeat them.
      num_classes=config_dict.placeholder(int),
      thing_classes=config_dict.placeholder(tuple),  # classes with instances; the others are stuff
      ignore_label=config_dict.placeholder(int),
      label_divisor=config_dict.placeholder(int),  # panoptic id = class * label_divisor + instance
      label_ids=config_dict.placeholder(tuple),  # the dataset's own id of each class, in output files
      colormap=config_dict.placeholder(tuple),  # RGB per class in pictures; a generated palette if unset
      image_ids_by_name=config_dict.placeholder(bool),  # panoptic files: "frankfurt_000000_000294"
  ))
  c.input = ml_collections.ConfigDict(dict(
      # (height, width); the dataset's defaults when unset. eval_size: what export serves and a
      # sliding window assumes (eval pads each image only to its size bucket's canvas, config.eval).
      crop_size=config_dict.placeholder(tuple),
      eval_size=config_dict.placeholder(tuple),
      # (long, short), e.g. (2048, 512): each image first resized, keeping its aspect ratio, to the
      # largest size within it (mmsegmentation's Resize(scale, keep_ratio=True)); training then
      # scales that by min_scale..max_scale, eval and predict infer at it (config.eval.base_size)
      # and score the prediction resized back to the image. Unset: images as they come.
      base_size=config_dict.placeholder(tuple),
      min_scale=0.75,
      max_scale=1.25,
      flip=True,
      shuffle_buffer=4096,
  ))
  c.model = ml_collections.ConfigDict(dict(
      backbone="seed",
      backbone_kwargs=ml_collections.ConfigDict(),
      head="",  # a head of segjax.heads (semantic, panoptic_deeplab, mask_former): set_head sets it
      dtype="float32",  # compute dtype; parameters, loss and metrics stay float32
      # Weights to start from (python -m segjax.convert writes them), loaded after init into the
      # top-level modules `parts`; a run resuming from its checkpoint ignores them.
      init_from=ml_collections.ConfigDict(dict(path=config_dict.placeholder(str), parts=("backbone",))),
  ))
  # The head's loss weights and post-processing settings (its Head.defaults, added by set_head).
  c.loss = ml_collections.ConfigDict()
  c.postprocess = ml_collections.ConfigDict()
  c.eval = ml_collections.ConfigDict(dict(  # how eval, predict, the benchmark and export infer
      mode="whole",  # whole: each image at once | slide: windows averaged where they overlap
      window=config_dict.placeholder(tuple),  # (height, width) of a window; the crop size if unset
      stride=config_dict.placeholder(tuple),  # (height, width); two thirds of the window if unset
      # Pixels at each window's inner borders left out of the average (0: mmsegmentation's plain
      # mean); at most (window - stride) // 2. A stride-1 model whose receptive field reaches no
      # further than this gives by windows its whole-image output (a strided one only where the
      # window starts fall on its output grid).
      margin=0,
      scales=(1.0,),  # the image resized by each factor, outputs averaged back at its size
      flip=False,  # also the mirrored image of each scale
      # Eval's own base size where a recipe tests at another than it trains at (Mask2Former:
      # shorter side 800, longer at most 1333); config.input.base_size when unset.
      base_size=config_dict.placeholder(tuple),
      # Eval images grouped by size into at most this many canvases, each compiled once (1: every
      # image padded to the split's largest).
      buckets=4,
  ))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw",  # adamw | sgd
      lr=1e-3,
      momentum=0.9,  # sgd only
      weight_decay=1e-4,
      schedule="cosine",  # constant | cosine | poly | step
      step_at=(0.889, 0.963),  # step: the rate x0.1 at these fractions of the run (Mask2Former's COCO)
      warmup_steps=0,
      poly_power=0.9,
      grad_clip_norm=0.0,  # 0 disables clipping
      # Up to N steps in a row whose gradient is not finite are skipped (not applied, counted as
      # `skipped_steps`); 0: the run stops at the first, its last good checkpoint kept.
      skip_nonfinite=0,
      backbone_lr_multiplier=1.0,  # the backbone's updates scaled by this (0: parameters as loaded)
      # Fine-tuning a ViT (EoMT's recipe): block i of L learns at layer_decay^(L - i) of the rate,
      # its embeddings as block 1 (1.0: off); the backbone rests through warmup_steps, then warms up
      # over backbone_warmup_steps (0: warms up with the rest); False: no weight decay on norms,
      # biases, layer scales, position embeddings and learned tokens and queries.
      layer_decay=1.0,
      backbone_warmup_steps=0,
      decay_norms_and_tokens=True,
  ))
  # Devices as a (data, fsdp) mesh: the batch split over all, the train state (parameters and
  # optimizer state) over groups of `fsdp` devices, each holding 1/fsdp of it (1: a whole copy each).
  c.mesh = ml_collections.ConfigDict(dict(fsdp=1))
  c.benchmark = ml_collections.ConfigDict(dict(  # python -m segjax.benchmark only
      image_size=512,
      warmup_steps=10,
      steps=30,  # a round of train or infer (step_ms: the fastest round's); --input's and --scoring's all
      rounds=3,
      modes=("train", "infer"),
  ))
  c.batch_size = 16
  c.eval_batch_size = 32
  c.total_steps = 1000
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.num_summary_images = 3
  return c


def set_head(config, name):
  """Makes `name` the head of `config`: segjax.head_keys.set_head, once every head's keys are its
  own (a config file that changes its head calls this)."""
  from segjax import heads  # pylint: disable=g-import-not-at-top  (jax and flax: the heads' registry)
  own = set(dict(head_keys.leaves(own_keys().to_dict())))
  for head_name, head in heads.HEADS.items():
    _check_head_declares(head_name, head, own)
  return head_keys.set_head(config, name)


def validate(config):
  """Raises UserError, one sentence naming the key, the value and what would do, for the first
  problem of `config`: a key the schema does not know or lacks, a value of the wrong type or out of
  range, values that contradict each other, a model part or keyword argument that does not exist.

  Every entry point calls it before any work. It is cheap and changes nothing: it imports no
  TensorFlow and starts no JAX backend (the heads' registry imports jax and flax).
  A config it has passed is not checked again (main checks it before any work, the trainer when
  it is given it)."""
  checked = config.to_json_best_effort(sort_keys=True)
  if checked in _PASSED:
    return
  from segjax import heads  # pylint: disable=g-import-not-at-top  (jax and flax: the head's registry)
  head = config.get("model", {}).get("head")
  if not isinstance(head, str) or head not in heads.HEADS:
    raise UserError(head_keys.unknown_head(head, heads.HEADS, config))
  held = head_keys.holder(config)
  if held not in (None, head) and any(head_keys.get(config, p) is head_keys.ABSENT for p in head_keys.of(head)):
    raise UserError(head_keys.head_switch(held, head))
  schema = base_config(head)
  _check_keys(config, schema, "config", head)
  _check_values(config, schema, "", {**heads.HEADS[head].rules, **_RULES})
  _check_relations(config)
  from segjax.engine import inference  # pylint: disable=g-import-not-at-top  (jax: only here)
  inference.check_window_fits(config, inference.protocol(config, resolved=False).window)
  _check_model(config)
  _PASSED.add(checked)


_PASSED = set()  # the configs validate passed, as JSON


def _check_head_declares(name, head, own):
  """A head's keys are its own (none of `own`, segjax's keys, nor inside or around one), and it has
  rules for its keys only: else a key of segjax's would vanish with the head, or a rule check nothing."""
  clash = sorted(path for path in head_keys.of(name) for key in own
                 if path == key or path.startswith(f"{key}.") or key.startswith(f"{path}."))
  if clash:
    raise UserError(f"Head '{name}' declares config.{clash[0]}, which is, or is inside, one of segjax's own "
                    "keys, in its defaults; a head's keys are its own: give it a name of the head's.")
  stray = sorted(set(head.rules) - head_keys.of(name))
  if stray:
    raise UserError(f"Head '{name}' has a rule for config.{stray[0]}, which is not in its defaults; a head's "
                    "rules check its own keys: add the key to its defaults or drop the rule.")


def _check_keys(config, schema, path, head):
  for key, value in config.items():
    if key not in schema:
      where = f"{path}.{key}"[len("config."):]
      raise UserError(f"Unknown config key '{path}.{key}'; {head_keys.unknown_key(where, list(schema.keys()), head)}")
    if isinstance(value, ml_collections.ConfigDict) and not key.endswith(head_keys.KWARGS):
      _check_keys(value, schema[key], f"{path}.{key}", head)
  for key in schema.keys():
    if key not in config:
      default = "a dict" if isinstance(schema[key], ml_collections.ConfigDict) else f"default {schema[key]!r}"
      raise UserError(f"{path} lacks the key '{key}' ({default}); override single keys (--{path}.{key}=...) "
                      f"rather than a whole dict, and start config files from segjax.config.base_config('{head}').")


_PAIR = (checks.is_pair, "give (height, width), two integers >= 1")
_NAME = (lambda v: isinstance(v, str) and bool(v.strip()), "give a non-empty string")

# What each key accepts beyond its type (its type: base_config's default, or a placeholder's). The
# eval protocol's keys are checked by engine.inference.protocol, the model's names and kwargs by
# build_segmenter, a head's own keys by its Head.rules.
_RULES = {
    "dataset.name": (_NAME[0], "give a dataset name, e.g. 'synthetic_scenes' or 'cityscapes'"),
    "dataset.train_split": (_NAME[0], "give a split, e.g. 'train' or 'train[:90%]'"),
    "dataset.eval_split": (_NAME[0], "give a split, e.g. 'validation'"),
    "dataset.num_classes": checks.AT_LEAST_1,
    "dataset.thing_classes": (lambda v: isinstance(v, (tuple, list)) and all(checks.is_int(c) and c >= 0 for c in v),
                              "give a tuple of class indices (integers >= 0)"),
    "dataset.ignore_label": checks.ints_from(0),
    "dataset.label_divisor": checks.AT_LEAST_1,
    "dataset.label_ids": (lambda v: isinstance(v, (tuple, list)) and all(checks.is_int(i) for i in v),
                          "give a tuple of integers, the dataset's own id of each class"),
    "dataset.colormap": (lambda v: isinstance(v, (tuple, list)) and all(
        isinstance(c, (tuple, list)) and len(c) == 3 and all(checks.is_int(x) and 0 <= x <= 255 for x in c) for c in v),
                         "give a tuple of (r, g, b) triples of integers 0..255, one per class"),
    "input.crop_size": _PAIR,
    "input.eval_size": _PAIR,
    "input.base_size": (lambda v: v in ((), []) or checks.is_pair(v),
                        "give (long, short), two integers >= 1, e.g. (2048, 512), or () for none"),
    "eval.base_size": (lambda v: v in ((), []) or checks.is_pair(v),
                       "give (long, short), two integers >= 1, e.g. (1333, 800), or () for input.base_size's"),
    "eval.buckets": checks.AT_LEAST_1,
    "input.min_scale": checks.number_in(lambda v: v > 0, "> 0"),
    "input.max_scale": checks.number_in(lambda v: v > 0, "> 0"),
    "input.shuffle_buffer": checks.AT_LEAST_1,
    "model.init_from.parts": (lambda v: isinstance(v, (tuple, list)) and all(isinstance(p, str) for p in v),
                              "give a tuple of module names, e.g. ('backbone',)"),
    "optimizer.name": checks.choice("adamw", "sgd"),
    "optimizer.lr": checks.number_in(lambda v: v > 0, "> 0"),
    "optimizer.momentum": checks.number_in(lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer.weight_decay": checks.WEIGHT,
    "optimizer.schedule": checks.choice("constant", "cosine", "poly", "step"),
    "optimizer.step_at": (lambda v: isinstance(v, (tuple, list)) and all(checks.is_number(f) and 0 < f < 1 for f in v),
                          "give fractions of the run in (0, 1), e.g. (0.889, 0.963)"),
    "optimizer.warmup_steps": checks.ints_from(0),
    "optimizer.poly_power": checks.number_in(lambda v: v > 0, "> 0"),
    "optimizer.grad_clip_norm": checks.number_in(lambda v: v >= 0, ">= 0 (0: no clipping)"),
    "optimizer.backbone_lr_multiplier": checks.number_in(lambda v: v >= 0, ">= 0 (0: the backbone as loaded)"),
    "optimizer.layer_decay": checks.number_in(lambda v: 0 < v <= 1, "in (0, 1] (1: off)"),
    "optimizer.backbone_warmup_steps": checks.ints_from(0),
    "optimizer.skip_nonfinite": (lambda v: checks.is_int(v) and v >= 0,
                                 "give an integer >= 0, the non-finite steps in a row to skip (0: stop at the first)"),
    "mesh.fsdp": checks.AT_LEAST_1,
    "benchmark.image_size": checks.AT_LEAST_1,
    "benchmark.warmup_steps": checks.ints_from(0),
    "benchmark.rounds": checks.AT_LEAST_1,
    "benchmark.steps": checks.AT_LEAST_1,
    "benchmark.modes": (lambda v: isinstance(v, (tuple, list)) and v and set(v) <= {"train", "infer"},
                        "give a tuple of train and/or infer"),
    "batch_size": checks.AT_LEAST_1,
    "eval_batch_size": checks.AT_LEAST_1,
    "total_steps": checks.AT_LEAST_1,
    "log_every": checks.AT_LEAST_1,
    "eval_every": checks.AT_LEAST_1,
    "checkpoint_every": checks.AT_LEAST_1,
    "keep_checkpoints": checks.AT_LEAST_1,
    "num_summary_images": checks.ints_from(0),
}
_TYPES = {bool: (lambda v: isinstance(v, bool), "give True or False"),
          int: (checks.is_int, "give an integer"),
          float: (checks.is_number, "give a number"),
          str: (lambda v: isinstance(v, str), "give a string"),
          tuple: (lambda v: isinstance(v, (tuple, list)), "give a tuple")}


def _check_values(config, schema, prefix, rules):
  """Each value against its rule, or else against the type of its default."""
  for key in schema.keys():
    path, value, default = f"{prefix}{key}", config[key], schema[key]
    if isinstance(default, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise UserError(f"config.{path} is {value!r}: give a dict of "
                        f"{'keyword arguments' if key.endswith(head_keys.KWARGS) else 'its keys'}.")
      if not key.endswith(head_keys.KWARGS):
        _check_values(value, default, f"{path}.", rules)
      continue
    if value is None and default is None:  # a placeholder left unset
      continue
    test, accepted = rules.get(path) or _TYPES.get(schema.get_type(key), (lambda v: True, ""))
    if not test(value):
      unset = " (or leave it unset)" if default is None else ""
      raise UserError(f"config.{path} is {value!r}: {accepted}{unset}.")


def _check_relations(config):
  """Values that are fine alone but not together."""
  inp, ds, opt = config.input, config.dataset, config.optimizer
  if inp.min_scale > inp.max_scale:
    raise UserError(f"config.input.min_scale is {inp.min_scale}, above config.input.max_scale={inp.max_scale}: "
                    "give min_scale <= max_scale.")
  if opt.warmup_steps >= config.total_steps:
    raise UserError(f"config.optimizer.warmup_steps is {opt.warmup_steps}, not below config.total_steps="
                    f"{config.total_steps}: give fewer warm-up steps than the run has (0 for none).")
  if opt.backbone_warmup_steps and opt.warmup_steps + opt.backbone_warmup_steps >= config.total_steps:
    raise UserError(f"config.optimizer.warmup_steps + backbone_warmup_steps is "
                    f"{opt.warmup_steps + opt.backbone_warmup_steps}, not below config.total_steps="
                    f"{config.total_steps}: give fewer warm-up steps than the run has.")
  things, n = tuple(ds.thing_classes or ()), ds.num_classes
  if n is not None:
    outside = [c for c in things if c >= n]
    if outside:
      raise UserError(f"config.dataset.thing_classes is {tuple(ds.thing_classes)}: class {outside[0]} is not one "
                      f"of the {n} classes of config.dataset.num_classes; give indices 0..{n - 1}.")
  if ds.ignore_label is not None:
    if ds.ignore_label in things:
      raise UserError(f"config.dataset.ignore_label is {ds.ignore_label}, one of config.dataset.thing_classes "
                      f"{things}: give a label that is no class, e.g. 255.")
    if n is not None and ds.ignore_label < n:
      raise UserError(f"config.dataset.ignore_label is {ds.ignore_label}, one of the {n} classes of "
                      f"config.dataset.num_classes (0..{n - 1}): give a label that is no class, e.g. 255.")


def _check_model(config):
  """What build_segmenter would refuse (the dtype, backbone and decoders by name, their kwargs by
  key), what the head refuses, and the modules init_from names."""
  # pylint: disable=g-import-not-at-top  (jax and flax: only here)
  from segjax import heads
  try:
    model = heads.build_segmenter(config.model, config.dataset.num_classes or 1)
  except ValueError as e:
    raise UserError(str(e)) from e
  head, ds = heads.get(config), config.dataset
  if "panoptic" in head.metrics and ds.label_divisor is not None and (ds.num_classes or 0) > ds.label_divisor:
    raise UserError(f"config.dataset.num_classes is {ds.num_classes}, above config.dataset.label_divisor="
                    f"{ds.label_divisor}: panoptic ids class * label_divisor + instance need a divisor >= "
                    "the class count.")
  head.check(config)
  if config.optimizer.layer_decay != 1.0 and not hasattr(model.backbone, "depth"):
    raise UserError(f"config.optimizer.layer_decay is {config.optimizer.layer_decay}, but config.model.backbone "
                    f"'{config.model.backbone}' has no blocks to decay over: use it with a ViT, or set 1.0.")
  init = config.model.init_from
  if init.path:
    modules = ["backbone"] + [scope for scope, _, _ in model.decoders]
    if not init.parts:
      raise UserError("config.model.init_from.parts is empty; name the modules to load, e.g. (\"backbone\",).")
    for part in init.parts:
      if part not in modules:
        raise UserError(f"config.model.init_from.parts names '{part}', which this model does not have; "
                        f"choose from {', '.join(modules)}.")


def load_config_file(path):
  """`get_config()` of a config file, loaded the way config_flags loads it: "FILE:ARG" passes ARG
  (a recipe's "tiny" variant)."""
  path, _, arg = path.partition(":")
  spec = importlib.util.spec_from_file_location("_segjax_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()
