"""The import rules that keep segjax forkable, read from its source with `ast` (nothing is imported):
no import circle, models/ a leaf that copies out alone and never needs TensorFlow, and an engine
that reaches heads and datasets through their registries only. Every import statement counts, those
inside functions too: a late import hides a circle, it does not break it."""
import ast
import os

import pytest

SEGJAX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "segjax")
TENSORFLOW = ("tensorflow", "tensorflow_datasets")


def modules():
  """{module name: path} of every module under segjax/."""
  found = {}
  for folder, _, files in os.walk(SEGJAX):
    for file in files:
      if file.endswith(".py"):
        path = os.path.join(folder, file)
        name = os.path.relpath(path[:-3], os.path.dirname(SEGJAX)).replace(os.sep, ".")
        found[name.removesuffix(".__init__")] = path
  return found


def imports(source, name, known):
  """What module `name` imports in `source`: segjax's modules (the deepest that exists among
  `known`), others by their top-level name."""
  def module(dotted):
    while dotted not in known and "." in dotted:
      dotted = dotted.rpartition(".")[0]
    return dotted

  package = name if known[name].endswith("__init__.py") else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found |= {module(a.name) if a.name.startswith("segjax") else a.name.split(".")[0] for a in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: from the package, up level - 1
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
      if not base.startswith("segjax"):
        found.add(base.split(".")[0])
        continue
      found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else module(base) for a in node.names}
  found.discard(name)
  return found


def graph():
  known = modules()
  return {name: imports(open(path).read(), name, known) for name, path in known.items()}


def circles(g):
  """The groups of segjax modules that import each other, round a circle (Tarjan's components)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in g[v] & g.keys():
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = set()
      while v not in group:
        group.add(stack.pop())
      on_stack.difference_update(group)
      if len(group) > 1:
        found.append(sorted(group))

  for v in sorted(g):
    if v not in index:
      visit(v)
  return found


def models_reaching_out(g):
  return [(m, d) for m, deps in g.items() if m.startswith("segjax.models") for d in sorted(deps)
          if d.startswith("segjax") and not d.startswith("segjax.models")]


def models_with_tensorflow(g):
  return [(m, d) for m, deps in g.items() if m.startswith("segjax.models") for d in sorted(deps)
          if d in TENSORFLOW]


def engine_naming_a_head_or_dataset(g):
  """The engine asks the head and the dataset the config names, through their registries."""
  return [(m, d) for m, deps in g.items() if m.startswith("segjax.engine") for d in sorted(deps)
          if d.startswith(("segjax.heads.", "segjax.data.datasets"))]


RULES = (circles, models_reaching_out, models_with_tensorflow, engine_naming_a_head_or_dataset)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_segjax_keeps_the_rule(rule):
  assert rule(graph()) == []


def test_no_two_modules_share_a_file_name():
  """A name says which file: heads/mask_former.py is the head, models/mask_former_decoder.py its decoder."""
  names = [os.path.basename(path) for path in modules().values() if not path.endswith("__init__.py")]
  assert sorted({n for n in names if names.count(n) > 1}) == []


@pytest.mark.parametrize("rule,module,planted", [
    (circles, "segjax.errors", "from segjax.engine import train"),  # train imports errors
    (circles, "segjax.models.layers", "from segjax.models import resnet"),  # inside models/ too
    (models_reaching_out, "segjax.models.resnet", "from segjax.errors import UserError"),
    (models_with_tensorflow, "segjax.models.convnext", "import tensorflow as tf"),
    (engine_naming_a_head_or_dataset, "segjax.engine.train", "from segjax.heads.mask_former import MaskFormer"),
    (engine_naming_a_head_or_dataset, "segjax.engine.evaluator", "from segjax.data.datasets import cityscapes"),
], ids=lambda v: v.__name__ if callable(v) else "")
def test_each_rule_fails_on_a_planted_import(rule, module, planted):
  known, g = modules(), graph()
  source = open(known[module]).read()
  late = f"{source}\n\ndef _planted():\n  {planted}\n"  # inside a function: a late import counts too
  g[module] = imports(late, module, known)
  assert rule(g), (module, planted)
