"""MetricsWriter: a resumed run's records hold each step once, and a failed write is a sentence."""
import json
import os

import pytest

from segjax.engine.metrics_writer import MetricsWriter
from segjax.errors import UserError


def _write(path, lines):
  with open(path, "w") as f:
    f.write("".join(lines))


def _lines(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _record(step, kind, **values):
  return json.dumps({"step": step, "kind": kind, **values}) + "\n"


def test_a_resumed_run_drops_what_the_dead_run_logged_after_its_step(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  _write(path, [_record(1, "train", loss=3.0), _record(2, "train", loss=2.0), _record(2, "eval", miou=0.1),
                _record(2, "eval_only", miou=0.2), _record(3, "train", loss=1.0), '{"step": 4, "ki'])
  writer = MetricsWriter(str(tmp_path), resumed_step=2)
  writer.write(3, "train", {"loss": 1.5})
  writer.close()
  assert [(r["step"], r["kind"]) for r in _lines(path)] == [
      (1, "train"), (2, "train"), (2, "eval"), (2, "eval_only"), (3, "train")]
  assert _lines(path)[-1]["loss"] == 1.5  # the rerun's step 3, not the dead run's


def test_eval_only_appends_on_a_line_of_its_own_and_never_rewrites_the_file(tmp_path):
  # Its run may be logging: a rewrite would move metrics.jsonl from under the run's open file.
  path = str(tmp_path / "metrics.jsonl")
  _write(path, [_record(2, "train", loss=2.0), '{"step": 3, "kind": "tra'])  # a killed run's torn line
  inode = os.stat(path).st_ino
  writer = MetricsWriter(str(tmp_path))  # --eval_only
  writer.write(2, "eval_only", {"miou": 0.5})
  writer.close()
  assert os.stat(path).st_ino == inode
  with open(path) as f:
    assert f.read().splitlines()[1:] == ['{"step": 3, "kind": "tra', _record(2, "eval_only", miou=0.5).strip()]
  MetricsWriter(str(tmp_path), resumed_step=2).close()  # the run's resume drops the torn line
  assert [(r["step"], r["kind"]) for r in _lines(path)] == [(2, "train"), (2, "eval_only")]


def test_an_eval_only_line_lands_in_the_file_its_runs_resume_rewrote_meanwhile(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  _write(path, [_record(1, "train", loss=3.0), _record(2, "train", loss=2.0), _record(3, "train", loss=1.0)])
  reader = MetricsWriter(str(tmp_path))  # --eval_only, scoring for a while
  MetricsWriter(str(tmp_path), resumed_step=2).close()  # meanwhile its run resumes: a new file
  reader.write(2, "eval_only", {"miou": 0.5})
  reader.close()
  assert [(r["step"], r["kind"]) for r in _lines(path)] == [(1, "train"), (2, "train"), (2, "eval_only")]


def test_tensorboard_is_told_to_hide_the_dead_runs_later_steps(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  MetricsWriter(str(tmp_path), resumed_step=7).close()
  (events,) = os.listdir(tmp_path / "tensorboard")
  starts = [e.step for e in tf.compat.v1.train.summary_iterator(str(tmp_path / "tensorboard" / events))
            if e.session_log.status == e.session_log.START]
  assert starts == [8]  # TensorBoard purges older events at step >= 8


def test_a_full_disk_is_one_sentence(tmp_path):
  os.symlink("/dev/full", tmp_path / "metrics.jsonl")  # every write fails with ENOSPC
  writer = MetricsWriter(str(tmp_path))
  with pytest.raises(UserError, match=r"^Cannot write .*metrics.jsonl \(No space left on device\); free space "
                     r"there and rerun, which resumes from the latest checkpoint.$"):
    writer.write(1, "train", {"loss": 1.0})
