"""The optimizer a config names: optax's AdamW or SGD under a warm-up and decay schedule, with
gradient clipping, a lower backbone rate and non-finite steps skipped; for ViTs, layer-wise rates,
a two-stage warm-up and no weight decay on norms and tokens."""
import re

from flax import traverse_util
import optax

from segjax.errors import UserError
from segjax.models.backbones import BACKBONES
from segjax.models.segmenter import build

# Learned tokens and embeddings (besides every parameter of fewer than 2 dimensions, norms' scales
# and layer scales, and every bias, DINOv3's (2, D) qv_bias too) that decay_norms_and_tokens=False
# keeps from weight decay.
TOKENS = ("pos_embed", "cls_token", "registers", "queries", "query_feat", "query_pos", "level_embed")


def make_schedule(opt):
  """Learning rate per step: linear warm-up, then constant, cosine or poly decay to 0, or steps of
  x0.1 at the fractions `step_at` of the run (detectron2's multi-step schedule)."""
  decay_steps = max(opt.total_steps - opt.warmup_steps, 1)
  decays = {  # built only when chosen: each reads only its own keys
      "constant": lambda: optax.constant_schedule(opt.lr),
      "cosine": lambda: optax.cosine_decay_schedule(opt.lr, decay_steps),
      "poly": lambda: optax.polynomial_schedule(opt.lr, 0.0, opt.poly_power, decay_steps),
      "step": lambda: optax.piecewise_constant_schedule(
          opt.lr, {max(int(f * opt.total_steps) - opt.warmup_steps, 1): 0.1 for f in opt.step_at}),
  }
  if opt.schedule not in decays:
    raise UserError(f"Unknown schedule '{opt.schedule}': choose one of {', '.join(decays)} "
                    "(config.optimizer.schedule).")
  decay = decays[opt.schedule]()
  if not opt.warmup_steps:
    return decay
  warmup = optax.linear_schedule(0.0, opt.lr, opt.warmup_steps)
  return optax.join_schedules([warmup, decay], [opt.warmup_steps])


def make_optimizer(config):
  """optax transformation and schedule for `config.optimizer` over `config.total_steps`."""
  opt = config.optimizer.copy_and_resolve_references()
  with opt.unlocked():
    opt.total_steps = config.total_steps
  schedule = make_schedule(opt)
  if opt.name not in ("adamw", "sgd"):
    raise UserError(f"Unknown optimizer '{opt.name}': choose adamw or sgd (config.optimizer.name).")
  if opt.layer_decay != 1.0 or opt.backbone_warmup_steps or not opt.decay_norms_and_tokens:
    return _finish(_grouped(config, opt, schedule), opt), schedule
  if opt.name == "adamw":
    tx = optax.adamw(schedule, weight_decay=opt.weight_decay)
  else:
    tx = optax.chain(optax.add_decayed_weights(opt.weight_decay),
                     optax.sgd(schedule, momentum=opt.momentum, nesterov=False))
  return _finish(tx, opt), schedule


def _finish(tx, opt):
  """Clipping before, the backbone's multiplier after, skipping of non-finite steps around."""
  if opt.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  if opt.backbone_lr_multiplier != 1.0:  # as a lower rate for the backbone's parameter group
    backbone = lambda params: {name: name == "backbone" for name in params}
    tx = optax.chain(tx, optax.masked(optax.scale(opt.backbone_lr_multiplier), backbone))
  # A step whose gradient is not finite is not applied, up to skip_nonfinite in a row (0: none is
  # skipped). Always wrapped, so that a run can be resumed with another skip_nonfinite.
  return optax.apply_if_finite(tx, max_consecutive_errors=opt.skip_nonfinite)


def decays(params):
  """Which parameters weight decay applies to under decay_norms_and_tokens=False."""
  return traverse_util.path_aware_map(
      lambda path, p: p.ndim >= 2 and path[-1] not in TOKENS and not path[-1].endswith("bias"), params)


def backbone_schedule(opt, schedule):
  """The two-stage warm-up's backbone rate (EoMT): 0 through warmup_steps, a linear warm-up over
  backbone_warmup_steps, then the decay over the rest."""
  if not opt.backbone_warmup_steps:
    return schedule
  rest = opt.copy_and_resolve_references()
  total, first = opt.total_steps, opt.warmup_steps
  with rest.unlocked():
    rest.warmup_steps, rest.total_steps = opt.backbone_warmup_steps, total - first
    # "step": the drops at the run's steps int(f * total), as the rest's (as fractions of what is
    # left here; the half step keeps float rounding from moving one)
    rest.step_at = tuple((int(f * total) - first + 0.5) / (total - first) for f in opt.step_at)
  return optax.join_schedules([optax.constant_schedule(0.0), make_schedule(rest)], [opt.warmup_steps])


def rate_groups(config, opt, schedule):
  """({group: rate schedule}, a function of the parameters giving each its group): the backbone's
  block i of L at layer_decay^(L - i) (its embeddings as block 1, its last norm at 1) on the
  backbone's schedule, everything else at 1 on `schedule`."""
  backbone = backbone_schedule(opt, schedule)
  depth = build(BACKBONES, config.model, "backbone").depth if opt.layer_decay != 1.0 else 0
  rates = {"rest": schedule}
  for i in range(1, depth + 2):  # block i, depth + 1 for the last norm
    rates[f"backbone{i}"] = lambda step, m=opt.layer_decay ** max(depth - i, 0): m * backbone(step)
  rates["backbone"] = backbone

  def group(path):
    if path[0] != "backbone":
      return "rest"
    if not depth:
      return "backbone"
    block = re.fullmatch(r"block(\d+)", path[1])
    return f"backbone{int(block.group(1)) if block else depth + 1 if path[1] == 'norm' else 1}"

  return rates, lambda params: traverse_util.path_aware_map(lambda path, _: group(path), params)


def _grouped(config, opt, schedule):
  """AdamW or SGD with each group's own rate and weight decay where `decays` says (if asked)."""
  rates, groups = rate_groups(config, opt, schedule)
  mask = None if opt.decay_norms_and_tokens else decays
  if opt.name == "adamw":  # optax.adamw's pieces, in its order
    core = [optax.scale_by_adam(), optax.add_decayed_weights(opt.weight_decay, mask)]
  else:  # as optax.sgd after the decay, as above
    core = [optax.add_decayed_weights(opt.weight_decay, mask), optax.trace(decay=opt.momentum, nesterov=False)]
  scaled = optax.multi_transform({name: optax.scale_by_learning_rate(rate) for name, rate in rates.items()}, groups)
  return optax.chain(*core, scaled)
