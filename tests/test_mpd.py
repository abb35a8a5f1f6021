"""``wavelist mpd``: a real MPD (Debian's ``mpd``), started on a free loopback port with the test catalogue as its
music directory and a null audio output, and stopped after. Skipped where mpd is not installed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import programs
from tests.programs import free_port, wait_for
from wavelist.cli import main

pytestmark = pytest.mark.skipif(shutil.which("mpd") is None, reason="needs Debian's mpd (.ci/run installs it)")
N_TRACKS = 120


@pytest.fixture(scope="module")
def tables_dir(tmp_path_factory) -> Path:
    from playlists.synthetic import write_synthetic_tables

    return write_synthetic_tables(tmp_path_factory.mktemp("mpd-tables"), N_TRACKS, audio=True)


@pytest.fixture(scope="module")
def mpd_server(tables_dir, tmp_path_factory):
    """A real MPD serving ``tables_dir/audio`` on 127.0.0.1; its database updated. Yields the port and its
    playlist folder."""
    state = tmp_path_factory.mktemp("mpd-state")
    with programs.mpd_server(tables_dir / "audio", state, N_TRACKS) as port:
        yield port, state / "playlists"


@pytest.fixture
def mpd_port(mpd_server) -> int:
    return mpd_server[0]


@pytest.fixture
def client(mpd_port):
    from wavelist import player

    mpd = player.connect("127.0.0.1", mpd_port)
    mpd.stop()
    mpd.clear()
    yield mpd
    mpd.stop()
    mpd.clear()
    mpd.disconnect()


def queue(mpd) -> list[str]:
    return [song["file"] for song in mpd.playlistinfo()]


def cli(tables_dir: Path, port: int, *args: str) -> int:
    kind, *rest = args
    return main(["mpd", kind, "--tables", str(tables_dir), "--music-dir", str(tables_dir / "audio"),
                 "--host", "127.0.0.1", "--port", str(port), *rest])


def test_radio_from_the_song_mpd_plays(tables_dir, mpd_port, client, capsys):
    from playlists import load_tables
    from playlists.service import make_playlist

    client.add("1010.wav")
    client.play(0)
    client.pause(1)
    assert cli(tables_dir, mpd_port, "radio", "-n", "5") == 0
    expected = [e.track_id for e in make_playlist(load_tables(tables_dir), "radio", seed=1010, n=5).entries]
    assert queue(client) == ["1010.wav"] + [f"{i}.wav" for i in expected]
    assert "queued 5 tracks" in capsys.readouterr().out


def test_journey_from_a_given_seed_queues_and_plays(tables_dir, mpd_port, client):
    from playlists import load_tables
    from playlists.service import make_playlist

    assert cli(tables_dir, mpd_port, "journey", "--seed", "1000", "--to", "Song 1110", "-n", "6") == 0
    steps = make_playlist(load_tables(tables_dir), "journey", start="1000", end="1110", n=6).entries
    assert queue(client) == [f"{e.track_id}.wav" for e in steps]
    assert queue(client)[0] == "1000.wav" and queue(client)[-1] == "1110.wav"
    assert client.status()["state"] == "play"


def test_the_command_prints_its_answer_and_no_library_lines(tables_dir, mpd_port, client):
    """As a user runs it (the seed and its radio of 3): the answer on stdout, nothing on stderr (no python-mpd2 "Calling MPD connect(...)" or
    "disconnect()" lines); with -v the library's lines too."""
    command = [sys.executable, "-m", "wavelist.cli", "mpd", "radio", "--tables", str(tables_dir), "--music-dir",
               str(tables_dir / "audio"), "--host", "127.0.0.1", "--port", str(mpd_port), "--seed", "1030", "-n", "3"]
    env = {k: v for k, v in os.environ.items() if k != "WAVELIST_VERBOSE"}
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    assert quiet.returncode == 0 and quiet.stdout == f"queued 4 tracks in MPD at 127.0.0.1:{mpd_port}\n", quiet
    assert quiet.stderr == ""
    verbose = subprocess.run(command[:3] + ["-v"] + command[3:], capture_output=True, text=True, env=env,
                             cwd=Path(__file__).resolve().parents[1])
    assert "Calling MPD connect(" in verbose.stderr, verbose.stderr


def test_keep_going_tops_up_the_queue_never_twice(tables_dir, mpd_port, client):
    """Songs of 0.5 s play through MPD's null output: the queue runs low by itself, and the radio keeps going."""
    command = [sys.executable, "-m", "wavelist.cli", "mpd", "radio", "--tables", str(tables_dir), "--music-dir",
               str(tables_dir / "audio"), "--host", "127.0.0.1", "--port", str(mpd_port), "--seed", "1020",
               "-n", "3", "--low", "2", "--keep-going"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[1])
    try:
        wait_for(lambda: len(queue(client)) >= 13 or process.poll() is not None, "the radio", 60, every_s=0.1)
        assert process.poll() is None, process.stderr.read()
        played = int(client.status().get("song", 0))
    finally:
        process.terminate()
        process.wait(timeout=10)
    files = queue(client)
    assert len(files) >= 13 and len(set(files)) == len(files) and files[0] == "1020.wav"
    assert played >= 2  # it was topped up because songs played, not all at once


def test_session_top_up_only_when_low(tables_dir, mpd_port, client):
    from playlists import load_tables
    from playlists.service import TrackFinder
    from wavelist import player

    tables = load_tables(tables_dir)
    session = player.Session(client, tables, TrackFinder(tables, tables_dir / "audio"))
    assert session.add([1000, 1001, 1000]) == [1000, 1001] and session.add([1001]) == []
    assert session.top_up(4, low=1) == []  # MPD plays nothing: both songs are still to come
    added = session.top_up(4, low=5)
    assert len(added) == 4 and len(set(queue(client))) == 6


def test_user_errors_are_one_line(tables_dir, mpd_port, client, capsys):
    assert cli(tables_dir, mpd_port, "radio") == 2
    assert "MPD plays nothing: start a song in MPD or give --seed" in capsys.readouterr().err
    assert cli(tables_dir, free_port(), "radio", "--seed", "1000") == 2
    err = capsys.readouterr().err
    assert err.startswith("wavelist mpd: error: cannot reach MPD at 127.0.0.1:") and err.count("\n") == 1
    assert cli(tables_dir, mpd_port, "journey", "--seed", "1000", "--to", "Artist") == 2
    assert "matches" in capsys.readouterr().err


def test_mpd_loads_the_m3u8_wavelist_writes(tables_dir, mpd_server, client, tmp_path):
    """A real player's parser: MPD's extm3u plugin loads the M3U8 (EXTINF lines, paths relative to the folder the
    playlist lies in) from its music folder as written."""
    from playlists import load_tables
    from playlists.service import make_playlist

    out = tmp_path / "radio.m3u8"  # not in the synthetic music folder: it lies inside the tables, an input
    assert main(["radio", "--tables", str(tables_dir), "--seed", "Song 1030", "-n", "4", "--format", "m3u",
                 "--output", str(out), "--relative-to", str(tables_dir / "audio")]) == 0
    shutil.copy(out, tables_dir / "audio" / "radio.m3u8")
    client.load("radio.m3u8")
    expected = [e.track_id for e in make_playlist(load_tables(tables_dir), "radio", seed=1030, n=4).entries]
    assert queue(client) == [f"{i}.wav" for i in expected]
