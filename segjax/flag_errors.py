"""Why the --config file or a --config.key=value could not be applied, in one sentence.

config_flags reports these as exceptions of several types with library wording; `explain` turns
them into what to change, or returns None for an error it does not recognise.
"""
import os
import re
import traceback

from absl import flags
import ml_collections

from segjax import config as config_lib, head_keys


def explain(error, argv):
  """The sentence for `error`, raised while parsing `argv` (the arguments after the program)."""
  reason = (_explain_config_file(error) or _explain_override(argv)
            or (isinstance(error, flags.IllegalFlagValueError) and _explain_value(error, argv)))
  if not reason and isinstance(error, flags.Error) and not str(error).startswith("flag --config="):
    reason = str(error).splitlines()[0]  # --workdri, a missing --workdir: absl's own sentence
  return reason or None


def _explain_override(argv):
  """Finds the --config file or --config.key override that config_flags could not apply."""
  path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if path is None or not os.path.isfile(path.split(":")[0]):
    return f"Config file '{path}' does not exist; pass --config=configs/semantic.py or another file."
  config = config_lib.load_config_file(path.split(":")[0])
  named = [a.split("=", 1)[1] for a in argv if a.startswith("--config.model.head=")]
  head = named[-1] if named else config.model.head  # the head asked for, whose keys the file may lack
  for arg in argv:
    match = re.match(r"--config\.([\w.]+)(=|$)", arg)
    if not match:
      continue
    node, keys = config, match.group(1).split(".")
    for i, key in enumerate(keys):
      if not hasattr(node, "keys") or key not in node:
        if head != config.model.head and any(head_keys.get(config, p) is head_keys.ABSENT
                                             for p in head_keys.of(head)):
          return head_keys.head_switch(head_keys.holder(config) or config.model.head, head)
        where = ".".join(keys[:i + 1])
        known = list(node.keys()) if hasattr(node, "keys") else []
        reason = head_keys.unknown_key(where, known, head)
        if where in head_keys.MOVED or head_keys.foreign_key(where, head):
          return f"Unknown config key in {arg}: {reason}"
        if reason == head_keys.NO_KEYS:
          reason = "this config sets no keys there; add the key to the config file to override it."
        return f"Unknown config key in {arg}: '{key}'; {reason}"
      node = node[key]
  return None


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
          tuple: "a tuple, quoted: --config.KEY='(1, 2)'", ml_collections.ConfigDict:
          "a dict of keyword arguments, quoted: --config.KEY=\"{'width': 32}\""}


def _explain_value(error, argv):
  """The --config.key=value whose value config_flags could not parse as the key's type."""
  match = re.match(r"flag --config\.([\w.]+)=", str(error))
  path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if not match or path is None:
    return None
  key = match.group(1)
  value = next((a.split("=", 1)[1] for a in reversed(argv) if a.startswith(f"--config.{key}=")), None)
  *parents, last = key.split(".")
  node = config_lib.load_config_file(path)
  for parent in parents:
    node = node[parent]
  kind = _KINDS.get(node.get_type(last), "a value of its type").replace("KEY", key)
  current = node[last].to_dict() if isinstance(node[last], ml_collections.ConfigDict) else node[last]
  now = "leaves it unset" if current is None else f"has {current!r}"
  return f"config.{key} is {value!r} on the command line: give {kind} (the config file {now})."


def _explain_config_file(error):
  """A value of the wrong type assigned in the --config file, which ml_collections refuses there."""
  seen = error
  while seen is not None:
    match = re.match(r"Could not override field '(\w+)' \(reference\)\. (.*) is of original type "
                     r"<class '(\w+)'> and cannot be casted to type <class '(\w+)'>", str(seen))
    if isinstance(seen, TypeError) and match:
      frames = [f for f in traceback.extract_tb(seen.__traceback__) if "ml_collections" not in f.filename]
      where = f"{frames[-1].filename} line {frames[-1].lineno} (`{frames[-1].line}`)" if frames else "the config file"
      field, value, given, wanted = match.groups()
      paths = sorted({p for head in head_keys.names() for p in _paths_ending_in(config_lib.base_config(head), field)})
      key = paths[0] if len(paths) == 1 else field
      kind = next((k for t, k in _KINDS.items() if t.__name__ == wanted), wanted).split(",")[0]
      shown = repr(value) if given == "str" else value
      return f"{where} sets {key} to {shown}, a {given}: give {kind}."
    seen = seen.__cause__ or seen.__context__
  return None


def _paths_ending_in(config, field, prefix="config"):
  paths = []
  for key, value in config.items():
    if key == field:
      paths.append(f"{prefix}.{key}")
    if isinstance(value, ml_collections.ConfigDict):
      paths += _paths_ending_in(value, field, f"{prefix}.{key}")
  return paths
