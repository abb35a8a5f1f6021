"""A job killed with SIGKILL leaves nothing that looks complete; a rerun publishes complete, correct outputs."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beam_jobs import ingest
from storage import files
from tests.conftest import IN_MEMORY
from tests.test_determinism import assert_same_ingest_output

ROOT = Path(__file__).resolve().parents[1]


def ingest_flags(catalogue: Path, out: Path) -> list[str]:
    return ["--fma-metadata", str(catalogue / "fma_metadata"), "--audio-dir", str(catalogue / "fma_small"),
            "--out", str(out), *IN_MEMORY]


def kill_while_writing(argv: list[str], out: Path) -> Path:
    """Start the ingest job in its own process, SIGKILL it (and its children) once it has begun writing
    its outputs (Beam's temporary shard files exist in the staging folder); return that staging folder."""
    job = subprocess.Popen([sys.executable, "-m", "beam_jobs.ingest", *argv], cwd=ROOT, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and job.poll() is None:
            writing = [p for p in out.parent.glob(f".{out.name}.partial-*/**/*") if "beam-temp" in str(p)]
            if writing:
                break
            time.sleep(0.05)
        assert job.poll() is None, "the job ended before it could be killed in the middle"
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert job.returncode == -signal.SIGKILL
    staging = list(out.parent.glob(f".{out.name}.partial-*"))
    assert len(staging) == 1
    return staging[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_ingest_leaves_no_output_and_a_rerun_completes(pipeline_outputs, tmp_path, caplog):
    out = tmp_path / "data"
    staging = kill_while_writing(ingest_flags(pipeline_outputs["catalogue"], out), out)
    assert not out.exists()
    assert not (staging / files.SUCCESS_MARKER).exists() and not (staging / "summary.json").exists()
    with pytest.raises(ValueError, match="no _SUCCESS marker"):  # what every reader of DATA checks first
        files.require_complete(str(staging), made_by="wavelist ingest")

    with caplog.at_level(logging.WARNING, logger="storage.files"):
        summary = ingest.run(ingest_flags(pipeline_outputs["catalogue"], out))  # no --overwrite needed
    assert "unfinished staging folder(s) of earlier runs" in caplog.text and str(staging) in caplog.text
    assert summary["inputs"] == summary["accepted"] + summary["rejected"] == 32
    assert (out / files.SUCCESS_MARKER).exists()
    assert_same_ingest_output(pipeline_outputs["data"], out)


def test_killed_overwrite_leaves_the_old_output_untouched(pipeline_outputs, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(pipeline_outputs["data"], out)
    before = snapshot(out)
    kill_while_writing([*ingest_flags(pipeline_outputs["catalogue"], out), "--overwrite"], out)
    assert snapshot(out) == before


def old_output(out: Path) -> None:
    """A complete output of the kind ``test`` holding ``old.txt``."""
    with files.staged_output(str(out), overwrite=False, kind="test") as staging:
        Path(staging, "old.txt").write_text("old")


def test_publish_replaces_a_folder_in_one_rename(tmp_path):
    out = tmp_path / "out"
    old_output(out)
    with files.staged_output(str(out), overwrite=True, kind="test") as staging:
        Path(staging, "new.txt").write_text("new")
        assert sorted(p.name for p in out.iterdir()) == [files.SUCCESS_MARKER, "old.txt"]  # untouched meanwhile
    assert sorted(p.name for p in out.iterdir()) == [files.SUCCESS_MARKER, "new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or moved-aside folder left


def test_a_failed_job_removes_its_staging_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "out"
    old_output(out)
    with pytest.raises(RuntimeError, match="boom"):
        with files.staged_output(str(out), overwrite=True, kind="test") as staging:
            Path(staging, "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert sorted(p.name for p in out.iterdir()) == [files.SUCCESS_MARKER, "old.txt"]
