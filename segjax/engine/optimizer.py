"""The optimizer a config names: optax's AdamW or SGD under a warm-up and decay schedule, with
gradient clipping, a lower backbone rate and non-finite steps skipped."""
import optax

from segjax.errors import UserError


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
  if opt.name == "adamw":
    tx = optax.adamw(schedule, weight_decay=opt.weight_decay)
  elif opt.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(opt.weight_decay),
                     optax.sgd(schedule, momentum=opt.momentum, nesterov=False))
  else:
    raise UserError(f"Unknown optimizer '{opt.name}': choose adamw or sgd (config.optimizer.name).")
  if opt.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
  if opt.backbone_lr_multiplier != 1.0:  # as a lower rate for the backbone's parameter group
    backbone = lambda params: {name: name == "backbone" for name in params}
    tx = optax.chain(tx, optax.masked(optax.scale(opt.backbone_lr_multiplier), backbone))
  # A step whose gradient is not finite is not applied, up to skip_nonfinite in a row (0: none is
  # skipped). Always wrapped, so that a run can be resumed with another skip_nonfinite.
  tx = optax.apply_if_finite(tx, max_consecutive_errors=opt.skip_nonfinite)
  return tx, schedule
