"""Quiet by default: TensorFlow's notices only with ``wavelist -v``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


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


def test_progress_gives_no_estimate_before_a_pace_is_known(monkeypatch):
    """A worker that waited 25 s for its first track says how many it has, not "0.0 tracks/s, about 31 min left";
    the pace counts from the first track on."""
    import core.progress as progress_module
    from core.progress import Progress

    clock = iter([0.0, 25.0, 30.0, 41.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    progress = Progress("ingest worker 7 analysed", 80)
    assert progress.add() == "ingest worker 7 analysed: 1 of 80 tracks"  # 25 s after the start, the first track
    assert progress.add() is None  # 5 s later: not yet time for a line
    assert progress.add(2) == "ingest worker 7 analysed: 4 of 80 tracks, 0.19 tracks/s, about 7 min left"
    assert progress_module.progress_line("x", 1, 9, 24.0) == "x: 1 of 9 tracks, 0.042 tracks/s, about 3 min left"
    assert progress_module.progress_line("x", 768, 800, 7.0, "tiles").endswith("about 1 s left")  # not "0 s"


@pytest.fixture
def logging_state():
    """The root and named loggers' levels, handlers and the environment as they were, after the test."""
    import logging

    names = [None, "wavelist", "mpd", "mpd.base", "tensorflow", "absl", "apache_beam", "urllib3", "model"]
    levels = {name: logging.getLogger(name).level for name in names}
    handlers = list(logging.getLogger().handlers)
    environment = dict(os.environ)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().handlers[:] = handlers
    os.environ.clear()
    os.environ.update(environment)


@pytest.mark.parametrize("verbose", [False, True])
def test_library_loggers_are_quiet_unless_verbose(logging_state, verbose):
    """Every command's logging: wavelist's own lines at INFO; python-mpd2's "Calling MPD connect(...)",
    TensorFlow's, absl's, Beam's and any other library's INFO lines only with -v."""
    import logging

    from wavelist.cli import _quiet_libraries

    _quiet_libraries(verbose)
    for own in ("wavelist.demo", "wavelist.mpd", "beam_jobs.ingest", "model.train", "storage.files"):
        assert logging.getLogger(own).isEnabledFor(logging.INFO), own
    for library in ("mpd.base", "tensorflow", "absl", "apache_beam.runners", "urllib3.connectionpool",
                    "some.library.nobody.named"):
        assert logging.getLogger(library).isEnabledFor(logging.INFO) == verbose, library
        assert logging.getLogger(library).isEnabledFor(logging.WARNING), library


@pytest.mark.parametrize("verbose", [False, True])
def test_keras_prints_no_epoch_lines_unless_verbose(monkeypatch, verbose):
    """``wavelist train`` (and the demo's training) logs its own progress; Keras' epoch lines only with -v."""
    from model import train
    from schemas.flags import VERBOSE_ENV

    if verbose:
        monkeypatch.setenv(VERBOSE_ENV, "1")
    else:
        monkeypatch.delenv(VERBOSE_ENV, raising=False)
    assert train.parse_args(["--data", "d", "--out", "m"]).verbose == (2 if verbose else 0)


def test_demo_prints_playlists_with_the_commands_column_names(tmp_path):
    """The demo's radio and journey have the columns ``wavelist radio`` / ``journey`` print: to_seed, step."""
    from playlists import journey, load_tables
    from playlists.synthetic import write_synthetic_tables
    from wavelist.demo import playlists_text

    tables = load_tables(write_synthetic_tables(tmp_path, 40, n_styles=4))
    seed, end = int(tables.ids[0]), int(tables.ids[-1])
    text = playlists_text(tables, seed, journey(tables, seed, end, 6))
    radio_part, journey_part = text.split("\nJourney from")
    radio_header, journey_header = radio_part.splitlines()[2], journey_part.splitlines()[1]
    assert "to_seed" in radio_header.split() and "step" in journey_header.split(), text
    assert "similarity" not in radio_header + journey_header and "smoothness: " in text


def test_the_demo_catalogue_bar_in_a_log_is_a_few_states_not_one_per_clip(tmp_path, capsys):
    """On a terminal tqdm redraws one line; in a log (CI, a file) it added a state per clip (clips of 15 s take
    over the 0.1 s it waited between states)."""
    from wavelist.demo_catalogue import STYLES, generate

    generate(tmp_path, artists_per_style=1, tracks_per_artist=1, seconds=15.0, styles=STYLES[:6])
    states = [s for s in capsys.readouterr().err.replace("\n", "\r").split("\r") if "demo catalogue" in s]
    assert 1 <= len(states) <= 3 and "6/6" in states[-1], states
