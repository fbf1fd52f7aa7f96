"""A head's keys in a config: which head's keys a config holds, set_head, which makes a config one of
another head, the keys of earlier segjax versions (a run's config.json), and the sentences for a key
that is another head's or has moved. The heads' registry (jax, flax) is imported where it is read,
so a config file loads without them until it names a head."""
import difflib

import ml_collections

from segjax.errors import UserError

# Sub-dicts named *_kwargs hold a module's keyword arguments, which the module's build checks
# (segjax.models.segmenter.build), not the schema.
KWARGS = "_kwargs"

# Keys of earlier segjax versions and where they are now (a run's config.json may hold them).
MOVED = {
    "model.semantic_head": "model.decoder",
    "model.semantic_head_kwargs": "model.decoder_kwargs",
    "model.instance_head": "model.instance_decoder",
    "model.instance_head_kwargs": "model.instance_decoder_kwargs",
    "model.head_kwargs": "model.decoder_kwargs",
}
ABSENT = object()
_OWN_SECTIONS = ("model", "loss", "postprocess")  # kept, if empty, when a head's keys leave


def set_head(config, name):
  """Makes `name` the head of `config` (in place, and returned): config.model.head and the head's
  own keys (Head.defaults), the keys of any other head gone. A key that the head it held and the
  new one both own with the same default keeps its value (a *_kwargs dict if its module's name is
  kept), as the two mean it alike: semantic -> panoptic_deeplab keeps a tuned decoder and
  loss.semantic_*, while -> mask_former, whose decoder default differs, starts from its own.
  segjax.config.set_head checks the heads' declarations first."""
  from segjax import heads  # pylint: disable=g-import-not-at-top  (jax and flax: only here)
  if name not in heads.HEADS:
    raise UserError(unknown_head(name, heads.HEADS))
  held = heads.HEADS.get(holder(config))
  before = dict(leaves(held.defaults)) if held else {}  # with their defaults, which `of` leaves out
  wanted = dict(leaves(heads.HEADS[name].defaults))
  same = {path for path, default in wanted.items()
          if path in before and before[path] == default and get(config, path) is not ABSENT}
  kept = {path for path in same if not path.endswith(KWARGS) or path[:-len(KWARGS)] in same}
  for path in sorted(_every_heads_keys() - kept, key=lambda p: -p.count(".")):  # deepest first
    *sections, key = path.split(".")
    node = get(config, ".".join(sections))
    if isinstance(node, ml_collections.ConfigDict) and key in node:
      del node[key]
      while sections and ".".join(sections) not in _OWN_SECTIONS and not get(config, ".".join(sections)):
        del get(config, ".".join(sections[:-1]))[sections[-1]]  # a section of its own, emptied
        sections = sections[:-1]
  for path, default in wanted.items():
    if path not in kept:
      *sections, key = path.split(".")
      _section(config, sections)[key] = ml_collections.ConfigDict(default) if isinstance(default, dict) else default
  config.model.head = name
  return config


def get(config, path):
  """The value at a dotted path ("" for the config itself), or ABSENT."""
  for key in path.split(".") if path else ():
    if not isinstance(config, ml_collections.ConfigDict) or key not in config:
      return ABSENT
    config = config[key]
  return config


def holder(config):
  """The head whose keys the config holds (all of them; of several, the one with the most, the one
  model.head names among heads of the same keys), or None: after `--config.model.head=X` or a
  hand-set model.head, not necessarily the head it names."""
  from segjax import heads  # pylint: disable=g-import-not-at-top
  named = get(config, "model.head")
  held = [(len(paths), name == named, name) for name in heads.HEADS
          for paths in [of(name)] if paths and all(get(config, p) is not ABSENT for p in paths)]
  return max(held)[2] if held else None


def unknown_head(name, known, config=None):
  """The sentence for a config.model.head that names no head of `known` (with the earlier key that
  picked it, if the config holds one)."""
  close = difflib.get_close_matches(str(name), list(known), n=1)
  moved = [old for old in MOVED if config is not None and old.split(".")[1] in config.get("model", {})]
  said = f"Unknown head {name!r}: choose one of {', '.join(sorted(known))} (config.model.head)"
  if close:
    return f"{said}; did you mean '{close[0]}'?"
  return f"{said}; {moved_key(moved[0])}" if moved else f"{said}."


def upgraded(saved):
  """The dict of an earlier segjax's config.json (its head picked by model.semantic_head,
  instance_head and head) with its keys where they are now, and a sentence naming what moved;
  (saved, None) when nothing did. Its model's variables are named as they were."""
  model = saved["model"]
  if not any(path.split(".")[1] in model for path in MOVED):
    return saved, None
  if model.get("head"):
    name, decoders = model["head"], {"decoder": model["head"], "decoder_kwargs": model.get("head_kwargs", {})}
    used = ["model.head_kwargs"]
  else:
    name = "panoptic_deeplab" if model.get("instance_head") else "semantic"
    decoders = {"decoder": model.get("semantic_head", "seed"), "decoder_kwargs": model.get("semantic_head_kwargs", {})}
    used = ["model.semantic_head", "model.semantic_head_kwargs"]
    if name == "panoptic_deeplab":
      decoders.update(instance_decoder=model["instance_head"],
                      instance_decoder_kwargs=model.get("instance_head_kwargs", {}))
      used += ["model.instance_head", "model.instance_head_kwargs"]
  others = _every_heads_keys() - of(name)
  new = {section: {k: v for k, v in value.items() if f"{section}.{k}" not in others}
         if section in ("loss", "postprocess") else value for section, value in saved.items()}
  new["model"] = {**{k: v for k, v in model.items() if f"model.{k}" not in MOVED}, "head": name, **decoders}
  return new, (f"its config.json is an earlier segjax's, read with config.model.head='{name}': "
               + " ".join(moved_key(path) for path in used))


def leaves(defaults, prefix=""):
  """(dotted path, default) of nested dicts of defaults (a Head.defaults), a *_kwargs dict being
  one leaf."""
  for key, value in defaults.items():
    if isinstance(value, dict) and not key.endswith(KWARGS):
      yield from leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _section(config, path):
  for key in path:
    if key not in config:
      config[key] = ml_collections.ConfigDict()
    config = config[key]
  return config


def moved_key(old):
  """Where a key of MOVED is now, as a sentence."""
  return f"config.{old} has moved to config.{MOVED[old]}."


def head_switch(held, wanted):
  """The sentence for a config that holds the keys of head `held` but names head `wanted`."""
  return (f"config.model.head is '{wanted}', but the config holds the keys of head '{held}': a head brings keys "
          f"of its own, so give a config file of head '{wanted}', one that starts from segjax.config."
          f"base_config('{wanted}') or calls segjax.config.set_head.")


def foreign_key(path, head):
  """The sentence for `path`, a key that config.model.head=`head` does not own, when another head
  does; else None."""
  from segjax import heads  # pylint: disable=g-import-not-at-top  (jax and flax: only here)
  owners = sorted(name for name in heads.HEADS if any(p == path or p.startswith(f"{path}.") for p in of(name)))
  if not owners:
    return None
  named = owners[0] if len(owners) == 1 else f"{', '.join(owners[:-1])} and {owners[-1]}"
  return (f"config.{path} is a key of head{'s' if len(owners) > 1 else ''} {named}, and config.model.head is "
          f"'{head}'; a config file changes its head with segjax.config.set_head.")


def unknown_key(where, known, head):
  """Why `where` (a dotted path) is no key of a config of `head`, whose keys at that level are
  `known`: moved, another head's, or a typo of one of them."""
  if where in MOVED:
    return moved_key(where)
  foreign = foreign_key(where, head)
  if foreign:
    return foreign
  *parent, key = where.split(".")
  theirs = {p.split(".")[-1]: p for p in _every_heads_keys() if p.split(".")[:-1] == parent}
  close = difflib.get_close_matches(key, list(known) + [k for k in theirs if k not in known], n=1)
  if close and close[0] in known:
    return f"did you mean '{close[0]}'?"
  if close:
    return f"did you mean '{close[0]}'? {foreign_key(theirs[close[0]], head)}"
  return f"known keys: {', '.join(sorted(known))}." if known else NO_KEYS


NO_KEYS = "there are no keys there."


def names():
  """The registered heads' names."""
  from segjax import heads  # pylint: disable=g-import-not-at-top  (jax and flax: only here)
  return sorted(heads.HEADS)


def of(name):
  """The dotted paths of head `name`'s own keys (none for a head segjax does not know)."""
  from segjax import heads  # pylint: disable=g-import-not-at-top
  return set(dict(leaves(heads.HEADS[name].defaults))) if name in heads.HEADS else set()


def _every_heads_keys():
  """The dotted paths of every registered head's own keys."""
  return {path for name in names() for path in of(name)}
