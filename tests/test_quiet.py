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
