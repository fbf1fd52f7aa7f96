"""The config schema: every key a recipe may set, with its default, so a typo is caught by name."""
import difflib
import importlib.util

import ml_collections
from ml_collections import config_dict

from segjax.errors import UserError

# Sub-dicts whose keys are free: they are passed as keyword arguments to a module.
_FREE = ("backbone_kwargs", "semantic_head_kwargs", "instance_head_kwargs")


def base_config():
  """Defaults for every key; recipes in configs/ start from this and change what they need."""
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
      # (height, width); the dataset's defaults when unset. Eval images are padded to eval_size.
      crop_size=config_dict.placeholder(tuple),
      eval_size=config_dict.placeholder(tuple),
      min_scale=0.75,
      max_scale=1.25,
      flip=True,
      shuffle_buffer=4096,
  ))
  c.model = ml_collections.ConfigDict(dict(
      backbone="seed",
      backbone_kwargs=ml_collections.ConfigDict(),
      semantic_head="seed",
      semantic_head_kwargs=ml_collections.ConfigDict(),
      instance_head="",  # "" for semantic only, or center_offset
      instance_head_kwargs=ml_collections.ConfigDict(),
      dtype="float32",  # compute dtype; parameters, loss and metrics stay float32
      # Weights to start from (python -m segjax.convert writes them), loaded after init into the
      # top-level modules `parts`; a run resuming from its checkpoint ignores them.
      init_from=ml_collections.ConfigDict(dict(path=config_dict.placeholder(str), parts=("backbone",))),
  ))
  c.loss = ml_collections.ConfigDict(dict(
      semantic_weight=1.0,
      semantic_top_k=1.0,  # fraction of each image's hardest pixels in the cross-entropy; 1 = all
      center_weight=200.0,  # heatmap MSE (Panoptic-DeepLab's weights)
      offset_weight=0.01,  # offset L1, in pixels
      center_sigma=8.0,  # Gaussian of the centre targets, in pixels
  ))
  c.postprocess = ml_collections.ConfigDict(dict(
      center_threshold=0.1,
      nms_kernel=7,
      top_k=16,  # instance slots per image
      min_stuff_area=64,
  ))
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
  ))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw",  # adamw | sgd
      lr=1e-3,
      momentum=0.9,  # sgd only
      weight_decay=1e-4,
      schedule="cosine",  # constant | cosine | poly
      warmup_steps=0,
      poly_power=0.9,
      grad_clip_norm=0.0,  # 0 disables clipping
      backbone_lr_multiplier=1.0,  # the backbone's updates scaled by this (0: parameters as loaded)
  ))
  c.benchmark = ml_collections.ConfigDict(dict(  # python -m segjax.benchmark only
      image_size=512,
      warmup_steps=10,
      steps=30,
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


def validate(config):
  """Raises UserError naming the first key of `config` that the schema does not know."""
  _check_keys(config, base_config(), "config")


def _check_keys(config, schema, path):
  for key, value in config.items():
    if key not in schema:
      close = difflib.get_close_matches(key, list(schema.keys()), n=1)
      hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(schema.keys()))}."
      raise UserError(f"Unknown config key '{path}.{key}'{hint}")
    if isinstance(value, ml_collections.ConfigDict) and key not in _FREE:
      _check_keys(value, schema[key], f"{path}.{key}")


def load_config_file(path):
  """`get_config()` of a config file, loaded the way config_flags loads it: "FILE:ARG" passes ARG
  (a recipe's "tiny" variant)."""
  path, _, arg = path.partition(":")
  spec = importlib.util.spec_from_file_location("_segjax_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def tiny_variant(c):
  """A recipe's `:tiny` variant (`--config=configs/<dataset>/<recipe>.py:tiny`): the same model a few
  channels wide, small crops and three steps, so a test can run every recipe on a few fake files on
  a CPU. The data settings (dataset, splits, scales) stay the recipe's own."""
  if c.model.backbone.startswith("resnet"):
    c.model.backbone_kwargs.width = 4
  if c.model.semantic_head == "deeplabv3plus":
    c.model.semantic_head_kwargs.aspp_features = 8
    c.model.semantic_head_kwargs.decoder_features = 8
    c.model.semantic_head_kwargs.low_features = 4
  if c.model.instance_head:
    c.model.instance_head_kwargs.hidden = 8
    c.model.instance_head_kwargs.branch = 4
    c.loss.center_sigma = 2.0
    c.postprocess.nms_kernel = 3
    c.postprocess.min_stuff_area = 4
  c.model.dtype = "float32"
  c.model.init_from.path = None  # a few channels wide: no pretrained weights fit
  height, width = c.input.crop_size or (32, 32)
  c.input.crop_size = (32, 32 * width // height)  # the recipe's aspect ratio
  c.input.eval_size = (64, 64)
  c.optimizer.warmup_steps = 0
  c.batch_size = c.eval_batch_size = 8
  c.total_steps = c.eval_every = c.checkpoint_every = 3
  c.log_every = 1
  c.num_summary_images = 1
  return c


# torchvision's ResNet50_Weights.IMAGENET1K_V1 (76.13% top-1), converted:
#   wget https://download.pytorch.org/models/resnet50-0676ba61.pth
#   python -m segjax.convert --arch=resnet50 --in=resnet50-0676ba61.pth --out=RESNET50_IMAGENET
RESNET50_IMAGENET = "~/.cache/segjax/resnet50_imagenet1k_v1.safetensors"


def deeplabv3plus_r50(dataset, output_stride, rates, crop_size, scales):
  """What every published-recipe config shares: ResNet-50 from ImageNet weights (RESNET50_IMAGENET)
  + DeepLabV3+ in bfloat16 on `dataset`, trained on crops of images scaled by a factor in `scales`."""
  c = base_config()
  c.dataset.name = dataset
  c.model.backbone = "resnet50"
  c.model.init_from.path = RESNET50_IMAGENET
  c.model.backbone_kwargs.output_stride = output_stride
  c.model.semantic_head = "deeplabv3plus"
  c.model.semantic_head_kwargs.rates = rates
  c.model.dtype = "bfloat16"
  c.input.crop_size = crop_size
  c.input.min_scale, c.input.max_scale = scales
  return c


def sgd_poly(c, lr=0.01, weight_decay=5e-4):
  """mmsegmentation's optimizer: SGD with momentum 0.9 and poly (0.9) decay."""
  c.optimizer.name, c.optimizer.lr, c.optimizer.momentum = "sgd", lr, 0.9
  c.optimizer.weight_decay, c.optimizer.schedule = weight_decay, "poly"
  return c


def panoptic_deeplab(c, lr, semantic_top_k, min_stuff_area):
  """Panoptic-DeepLab's head, losses, post-processing and optimizer (Adam without weight decay, poly
  after 1000 warm-up steps), as detectron2's projects/Panoptic-DeepLab sets them."""
  c.model.instance_head = "center_offset"
  c.model.instance_head_kwargs.hidden = 128
  c.loss.semantic_top_k, c.loss.center_weight, c.loss.offset_weight = semantic_top_k, 200.0, 0.01
  c.loss.center_sigma = 8.0
  c.postprocess.center_threshold, c.postprocess.nms_kernel, c.postprocess.top_k = 0.1, 7, 200
  c.postprocess.min_stuff_area = min_stuff_area
  c.optimizer.name, c.optimizer.lr, c.optimizer.weight_decay = "adamw", lr, 0.0
  c.optimizer.schedule, c.optimizer.warmup_steps = "poly", 1000
  return c


def schedule(c, total_steps, batch_size, eval_batch_size, variant=""):
  """Steps and batch sizes, ten evals and checkpoints per run; the `tiny` variant if asked."""
  c.batch_size, c.eval_batch_size, c.total_steps = batch_size, eval_batch_size, total_steps
  c.log_every = 100
  c.eval_every = c.checkpoint_every = total_steps // 10
  return tiny_variant(c) if variant == "tiny" else c
