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
