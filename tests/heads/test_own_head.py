"""A head from outside segjax, as a researcher forks one: its decoder, its own config keys
(loss.toy_weight, model.toy_features) with their rules, its own targets and its `:tiny` part, all in
this file and registered from it, with no segjax module edited. This file is also the config file
that `python -m segjax.main` reads in the end-to-end test."""
import json
import os
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from segjax import checks, heads
from segjax import config as config_lib
from segjax.errors import UserError
from segjax.heads import losses
from segjax.heads.head import Head
from tiny_configs import tiny_config

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)


class ForegroundDecoder(nn.Module):
  """Class logits and a foreground logit from the deepest features, through `features` channels."""
  num_classes: int
  features: int

  @nn.compact
  def __call__(self, features, size, train):
    x = nn.relu(nn.Conv(self.features, (1, 1))(features["out"]))
    up = lambda y: jax.image.resize(y, (y.shape[0], *size, y.shape[-1]), "bilinear")
    return {"toy_logits": up(nn.Conv(self.num_classes, (1, 1))(x)), "toy_fg": up(nn.Conv(1, (1, 1))(x))[..., 0]}


class Toy(Head):
  """Cross-entropy plus toy_weight times a foreground loss on a target of its own."""
  outputs = {"toy_logits": "probabilities", "toy_fg": "dense"}
  defaults = {"model": {"toy_features": 16}, "loss": {"toy_weight": 1.0}}
  rules = {"loss.toy_weight": checks.WEIGHT, "model.toy_features": checks.AT_LEAST_1}

  def modules(self, model_config, num_classes, dtype):
    return (("toy_head", ForegroundDecoder(num_classes, model_config.toy_features), None),)

  def targets(self, semantic, instance, config):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (tf.data only)
    return {"toy_foreground": tf.cast((semantic > 0) & (semantic != config.dataset.ignore_label), tf.float32)}

  def loss(self, outputs, batch, config, key=None):
    ce = losses.semantic_cross_entropy(outputs["toy_logits"], batch["semantic"], config.dataset.ignore_label)
    fg = jnp.mean(losses.sigmoid_ce(outputs["toy_fg"], batch["toy_foreground"]))
    return ce + config.loss.toy_weight * fg, {"toy_ce": ce, "toy_fg_ce": fg}

  def postprocess(self, outputs, config, sort=False):
    return {"semantic": jnp.argmax(outputs["toy_logits"], -1).astype(jnp.int32)}

  def tiny(self, c):
    c.model.toy_features = 4


def get_config(variant=""):
  """The toy head on the tiny scenes (data_dir from --config.dataset.data_dir); its `tiny` variant
  the way recipes make theirs."""
  from segjax.recipes import tiny_variant  # pylint: disable=g-import-not-at-top
  heads.register("toy", Toy())
  c = tiny_config(None, "toy")
  c.loss.toy_weight = 0.5
  return tiny_variant(c) if variant == "tiny" else c


@pytest.fixture
def toy(monkeypatch):
  monkeypatch.setitem(heads.HEADS, "toy", Toy())


def _main(args, workdir):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS, os.environ.get("PYTHONPATH", "")]))
  return subprocess.run([sys.executable, "-m", "segjax.main", f"--config={os.path.abspath(__file__)}:tiny",
                         f"--workdir={workdir}", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)


@pytest.mark.slow
def test_it_trains_one_step_and_is_scored_through_segjax_main(data_dir, tmp_path):
  workdir = tmp_path / "run"
  result = _main([f"--config.dataset.data_dir={data_dir}", "--config.total_steps=1", "--config.eval_every=1",
                  "--config.checkpoint_every=1"], workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["model"]["head"] == "toy" and saved["loss"] == {"toy_weight": 0.5}
  assert saved["model"]["toy_features"] == 4  # its tiny part
  lines = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  (trained,) = [l for l in lines if l["kind"] == "train"]
  assert trained["step"] == 1 and trained["toy_fg_ce"] > 0  # its own target reached its loss
  assert trained["loss"] == pytest.approx(trained["toy_ce"] + 0.5 * trained["toy_fg_ce"], rel=1e-5)
  (scored,) = [l for l in lines if l["kind"] == "eval"]
  assert 0 <= scored["miou"] <= 1 and "pq" not in scored  # its metrics: semantic only


def test_a_typo_in_its_key_on_the_command_line_gets_did_you_mean(tmp_path):
  result = _main(["--config.loss.toy_wieght=2"], tmp_path / "run")
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      "segjax: error: Unknown config key in --config.loss.toy_wieght=2: 'toy_wieght'; did you mean 'toy_weight'?")
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key,value,sentence", [
    ("loss.toy_wieght", 2.0, "Unknown config key 'config.loss.toy_wieght'; did you mean 'toy_weight'?"),
    ("model.toy_featurs", 8, "Unknown config key 'config.model.toy_featurs'; did you mean 'toy_features'?"),
    ("loss.toy_weight", -1.0, "config.loss.toy_weight is -1.0: give a number >= 0."),
    ("model.toy_features", 0, "config.model.toy_features is 0: give an integer >= 1."),
])
@pytest.mark.usefixtures("toy")
def test_its_keys_are_checked_by_name_and_by_its_rules(key, value, sentence):
  config = tiny_config("/nonexistent", "toy")
  section, name = key.split(".")
  config[section][name] = value
  with pytest.raises(UserError) as e:
    config_lib.validate(config)
  assert str(e.value) == sentence


@pytest.mark.usefixtures("toy")
def test_a_head_set_by_hand_is_named_with_the_head_the_config_holds():
  config = tiny_config("/nonexistent")
  config.model.head = "toy"  # as --config.model.head=toy would: the semantic head's keys stay, the toy's are missing
  with pytest.raises(UserError) as e:
    config_lib.validate(config)
  assert str(e.value).startswith(
      "config.model.head is 'toy', but the config holds the keys of head 'semantic': a head brings keys of its "
      "own, so give a config file of head 'toy', one that starts from segjax.config.base_config('toy') or "
      "calls segjax.config.set_head")
  config_lib.set_head(config, "toy")
  config_lib.validate(config)
  assert "decoder" not in config.model and config.loss.to_dict() == {"toy_weight": 1.0}


def test_switching_heads_keeps_what_both_mean_alike_and_resets_the_rest():
  config = config_lib.base_config()  # semantic
  config.model.decoder, config.model.decoder_kwargs.rates = "deeplabv3plus", (6, 12, 18)
  config.loss.semantic_top_k = 0.2
  config_lib.set_head(config, "panoptic_deeplab")  # the same decoder registry: kept
  assert (config.model.decoder, config.model.decoder_kwargs.rates, config.loss.semantic_top_k) == (
      "deeplabv3plus", (6, 12, 18), 0.2)
  config.model.head = "mask_former"  # by hand, as a flag would: the config still holds panoptic_deeplab's keys
  config_lib.set_head(config, "mask_former")  # another registry: its own decoder, kwargs reset
  assert (config.model.decoder, config.model.decoder_kwargs.to_dict(), config.loss.semantic_top_k) == (
      "mask_former", {}, 0.2)
  assert "instance_decoder" not in config.model and "center_weight" not in config.loss
  config_lib.validate(config)
  config_lib.set_head(config, "semantic")
  assert config.model.decoder == "seed" and set(config.postprocess) == set()
  config_lib.validate(config)


class _Greedy(Toy):
  defaults = {"model": {"dtype": "bfloat16"}, "loss": {"toy_weight": 1.0}}


class _Enclosing(Toy):
  defaults = {"model": {"init_from": 3}}


class _Stray(Toy):
  rules = {**Toy.rules, "loss.toy_wait": checks.WEIGHT}


@pytest.mark.parametrize("head,sentence", [
    (_Greedy(), "Head 'bad' declares config.model.dtype, which is, or is inside, one of segjax's own keys"),
    (_Enclosing(), "Head 'bad' declares config.model.init_from, which is, or is inside, one of segjax's own keys"),
    (_Stray(), "Head 'bad' has a rule for config.loss.toy_wait, which is not in its defaults"),
])
def test_a_head_keeps_to_its_own_keys(monkeypatch, head, sentence):
  """A registered head that would take segjax's keys stops every config being made, before any
  key is lost."""
  monkeypatch.setitem(heads.HEADS, "bad", head)
  with pytest.raises(UserError, match=f"^{re.escape(sentence)}"):
    config_lib.base_config("semantic")


class _Sectioned(Toy):
  defaults = {"toy": {"a": 1, "deep": {"b": 2}}, "loss": {"toy_weight": 1.0}}
  rules = {}


class _Keyless(Toy):
  defaults, rules = {}, {}


def test_a_section_of_a_heads_own_leaves_with_it_and_a_keyless_head_holds_no_config(monkeypatch):
  monkeypatch.setitem(heads.HEADS, "sectioned", _Sectioned())
  monkeypatch.setitem(heads.HEADS, "keyless", _Keyless())
  config = config_lib.base_config("sectioned")
  assert config.toy.deep.b == 2
  config_lib.set_head(config, "semantic")
  assert "toy" not in config and "toy_weight" not in config.loss
  config_lib.validate(config)
  bare = config_lib.own_keys()  # no head's keys: the keyless head is not taken for the one it holds
  bare.model.head = "semantic"
  with pytest.raises(UserError, match=r"^config\.\w+ lacks the key '\w+' \(default .*base_config\('semantic'\)\.$"):
    config_lib.validate(bare)
