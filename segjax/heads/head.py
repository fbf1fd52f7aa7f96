"""The head contract: what a head owns, so that the trainer, the evaluator, predict, the benchmark,
export, the data pipeline and the config's check ask it and never test for a head's name, an
output key or a key of its own."""

# The panoptic map's value of pixels in no segment (the common outputs' `panoptic`).
VOID = -1


class Head:
  """One head: its config keys, its decoders (Flax modules), its targets, its loss, its
  post-processing and the metrics that apply. A subclass overrides what differs; one instance per
  name lives in segjax.heads.HEADS, and config.model.head names it."""

  # Its config keys and their defaults, by section ({"loss": {"toy_weight": 1.0}}): what it reads
  # beyond segjax's own keys (segjax.config.base_config). A config of this head holds them
  # (segjax.config.set_head adds them), and the check knows them: a typo is caught by name.
  defaults = {}
  # What each of its keys accepts beyond the type of its default: {"loss.toy_weight": (test, what
  # to give)}, e.g. segjax.checks.WEIGHT. Keys ending in _kwargs are a module's keyword arguments,
  # checked by the module.
  rules = {}

  # Label maps of the dataset its targets are made from ("semantic", and "instance" for a head
  # that predicts instances); a dataset without one of them is refused before training.
  label_keys = ("semantic",)
  # What its common outputs are scored by: "semantic" (mIoU), "instances" (COCO mask AP) and
  # "panoptic" (PQ).
  metrics = ("semantic",)
  # How each of its dense outputs is averaged over the eval protocol's views (segjax.engine.inference):
  # "probabilities" (softmax, mean, log), "displacement" (pixels (dy, dx): flipped and scaled as a
  # vector), "dense" (flipped and resized as a map), "global" (one value per image or query:
  # averaged as it is, and no sliding windows).
  outputs = {}

  def modules(self, model_config, num_classes, dtype):
    """Its decoders, ((variable scope, Flax module, output key or None), ...): each module maps
    (features, size, train) to its outputs at input resolution, a dict, or one array named by its
    output key. The scopes name the parameters in checkpoints and converted files."""
    raise NotImplementedError

  def check(self, config):
    """Raises UserError for values this head cannot work with together (called by validation,
    once each key has passed its rule)."""

  def train_inputs(self, config, step):
    """Keyword arguments of the model's training call beyond the images, from the step (a traced
    int32): what its decoders change over training (EoMT's masking probabilities)."""
    return {}

  def targets(self, semantic, instance, config):
    """The targets its loss needs, made in tf.data from one cropped example's (H, W) int32 label
    maps (instance is None unless label_keys has it): a dict of tensors of static shape."""
    return {}

  def synthetic_targets(self, config, key, n, size):
    """A benchmark batch's targets: random arrays of the shapes `targets` makes, for n images of
    size x size."""
    return {}

  def loss(self, outputs, batch, config, key):
    """(scalar float32 loss, {name: scalar} of figures to log: its parts and pixel_acc); `key`, a
    PRNG key of this step, for what it samples."""
    raise NotImplementedError

  def postprocess(self, outputs, config, sort=False):
    """The common outputs of a batch's dense outputs, inside jit: always `semantic` (N, H, W); with
    "instances" in metrics also `instances` (instance_map (N, H, W) of slot + 1, valid, classes,
    scores (N, K)) and `panoptic` (N, H, W). `sort`: a top-K by a full sort rather than
    lax.top_k, whose lowering readers of older StableHLO (TensorFlow 2.21's SavedModel) cannot load."""
    raise NotImplementedError

  def tiny(self, c):
    """Its part of a recipe's `:tiny` variant (segjax.recipes.tiny_variant): a few channels wide."""
