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
  from segjax import logs  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys, "unraisablehook", logs._quiet_unraisable)  # pylint: disable=protected-access

  class Raises:
    def __init__(self, message):
      self.message = message

    def __del__(self):
      raise RuntimeError(self.message)

  Raises("Event loop is closed")  # an Orbax writer thread's echo after a failed save
  Raises("a real fault")
  stderr = capsys.readouterr().err
  assert "Event loop is closed" not in stderr and "RuntimeError: a real fault" in stderr


def test_the_sentence_stays_last_when_python_collects_an_abandoned_write_at_exit():
  # A coroutine kept alive by a reference cycle is collected as the interpreter shuts down, as the
  # write of a failed Orbax save is; Python would then print "was never awaited" after the sentence.
  script = ("from segjax import main\n"
            "async def write_fragment(): pass\n"
            "pending = [write_fragment()]\n"
            "pending.append(pending)\n"
            "del pending\n"
            "main._fail('Cannot write checkpoint step 12.')\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == "segjax: error: Cannot write checkpoint step 12.", result.stderr
  assert "never awaited" not in result.stderr, result.stderr
