"""Quiet by default: TensorFlow's notices only with ``wavelist -v``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def stderr_of(*argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "WAVELIST_VERBOSE")}
    return subprocess.run([sys.executable, "-m", "wavelist.cli", *argv], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1]).stderr


def test_tensorflow_is_quiet_unless_verbose(tmp_path):
    """The oneDNN and absl lines TensorFlow prints on import, before any log level applies, only with -v."""
    argv = ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "model")]
    quiet = stderr_of(*argv)
    assert quiet.startswith("wavelist train: error:") and quiet.count("\n") == 1, quiet
    assert "oneDNN" in stderr_of("-v", *argv)


def test_progress_lines_say_count_total_pace_and_time_left():
    from core.progress import Progress, duration, progress_line

    assert progress_line("ingest", 120, 500, 60.0) == "ingest: 120 of 500 tracks, 2.0 tracks/s, about 3 min left"
    assert progress_line("embed", 10, None, 5.0, "model inputs") == "embed: 10 model inputs, 2.0 model inputs/s"
    assert progress_line("train", 0, 20, 0.0, "epochs") == "train: 0 of 20 epochs"
    assert (duration(45), duration(3 * 3600 + 300)) == ("45 s", "3 h 05 min")
    progress = Progress("x", 3, every_s=3600)
    assert progress.add() is None and progress.add(2) is None and progress.done == 3
    progress.every_s = 0
    assert progress.add().startswith("x: 4 of 3 tracks")
