"""The command line: a mistake a user can fix ends the run with its sentence once and no traceback."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_user_error_exits_non_zero_with_one_sentence(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  result = subprocess.run(
      [sys.executable, "-m", "segjax.main", "--config=configs/semantic.py", f"--workdir={blocker}/run",
       f"--config.dataset.data_dir={tmp_path / 'tfds'}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, XLA_FLAGS=""))
  assert result.returncode == 1
  sentence = f"segjax: error: Cannot write to workdir '{blocker}/run'"
  assert result.stderr.count("Cannot write to workdir") == 1 and sentence in result.stderr
  assert "Traceback" not in result.stderr
  assert blocker.read_text() == "not a directory"
  assert not (tmp_path / "tfds").exists()  # said before the dataset is built, not minutes later


def test_a_closed_event_loop_raised_where_it_cannot_propagate_is_not_printed(capsys, monkeypatch):
  from segjax import main  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys, "unraisablehook", main._quiet_unraisable)  # pylint: disable=protected-access

  class Raises:
    def __init__(self, message):
      self.message = message

    def __del__(self):
      raise RuntimeError(self.message)

  Raises("Event loop is closed")  # an Orbax writer thread's echo after a failed save
  Raises("a real fault")
  stderr = capsys.readouterr().err
  assert "Event loop is closed" not in stderr and "RuntimeError: a real fault" in stderr
