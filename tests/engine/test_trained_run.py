"""A workdir trained by an earlier segjax, whose config.json picked its head with
model.semantic_head, instance_head and head: read with its keys where they are now, the move said in
one line, its checkpoint read as it was (the variables kept their names)."""
import json
import logging
import shutil

import jax
import numpy as np
import pytest

from segjax import config as config_lib
from segjax import head_keys
from segjax.engine import trained_run
from segjax.errors import UserError

_OTHER_HEADS_KEYS = {"loss": {"class_weight": 2.0, "num_points": 12544, "center_weight": 200.0},
                     "postprocess": {"object_mask_threshold": 0.8, "top_k": 16}}


def _earlier(saved):
  """A config.json as segjax wrote it before heads owned their keys: every head's loss and
  post-processing keys, and the model's head picked by semantic_head / instance_head / head."""
  old = json.loads(json.dumps(saved))
  model = old["model"]
  head = model.pop("head")
  decoder, kwargs = model.pop("decoder"), model.pop("decoder_kwargs")
  if head == "mask_former":
    model.update(head="mask_former", head_kwargs=kwargs, semantic_head="seed", semantic_head_kwargs={},
                 instance_head="", instance_head_kwargs={})
  else:
    model.update(head="", head_kwargs={}, semantic_head=decoder, semantic_head_kwargs=kwargs,
                 instance_head=model.pop("instance_decoder", ""),
                 instance_head_kwargs=model.pop("instance_decoder_kwargs", {}))
  for section, keys in _OTHER_HEADS_KEYS.items():
    old[section] = {**keys, **old[section]}
  return old


def test_each_heads_earlier_config_reads_as_todays():
  for head in ("semantic", "panoptic_deeplab", "mask_former"):
    today = json.loads(config_lib.base_config(head).to_json_best_effort())
    today["model"]["decoder_kwargs"] = {"hidden": 24}
    read, sentence = head_keys.upgraded(_earlier(today))
    assert read == today, head
    assert f"read with config.model.head='{head}'" in sentence
  assert head_keys.upgraded(today) == (today, None)  # today's: untouched


def test_a_workdir_of_an_earlier_segjax_is_read_and_says_what_moved(panoptic_run, tmp_path, caplog):
  workdir = tmp_path / "earlier"
  shutil.copytree(panoptic_run, workdir)
  saved = json.loads((workdir / "config.json").read_text())
  (workdir / "config.json").write_text(json.dumps(_earlier(saved)))
  with caplog.at_level(logging.WARNING):
    earlier = trained_run.load(str(workdir))
  today = trained_run.load(panoptic_run)
  assert earlier.config.to_dict() == today.config.to_dict() and earlier.step == today.step
  jax.tree.map(np.testing.assert_array_equal, earlier.variables, today.variables)
  said = [r.getMessage() for r in caplog.records if "earlier segjax" in r.getMessage()]
  assert said == [f"'{workdir}': its config.json is an earlier segjax's, read with config.model.head="
                  "'panoptic_deeplab': config.model.semantic_head has moved to config.model.decoder. "
                  "config.model.semantic_head_kwargs has moved to config.model.decoder_kwargs. "
                  "config.model.instance_head has moved to config.model.instance_decoder. "
                  "config.model.instance_head_kwargs has moved to config.model.instance_decoder_kwargs."], said


def test_a_run_of_a_head_segjax_lacks_is_one_sentence(panoptic_run, tmp_path):
  workdir = tmp_path / "other"
  shutil.copytree(panoptic_run, workdir)
  saved = json.loads((workdir / "config.json").read_text())
  saved["model"]["head"] = "toy"
  (workdir / "config.json").write_text(json.dumps(saved))
  with pytest.raises(UserError) as e:
    trained_run.load(str(workdir))
  assert str(e.value) == (
      f"'{workdir}' was trained with head 'toy', which segjax.heads does not have here (it has eomt, eomt_semantic, "
      "mask_former, panoptic_deeplab, semantic): add it to HEADS (segjax/heads/__init__.py), or register it "
      "(segjax.heads.register) before reading the run.")
