"""``wavelist subsonic`` against a real Subsonic server: supysonic (pure Python; no token authentication, so the
password fallback is taken), started on a free loopback port with the test catalogue's audio as its library, in
its own folder with its own supysonic.conf and SQLite database, and stopped by its PID. The server's library is a
copy of the catalogue's audio plus one song the tables do not hold, as a server in a container sees the same files
under another folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from tests import programs
from wavelist.cli import main
from wavelist.subsonic import PASSWORD_ENV

USERS = {"alice": "open sesame", "bob": "bob's password"}
STRANGER = "zz/Stranger \x1b[31mred\x1b[0m.mp3"  # a song the tables do not hold, with a terminal escape in its name


@pytest.fixture(scope="module")
def music(pipeline_outputs) -> Path:
    """The catalogue's audio folder, as this machine sees it (``--music-dir``)."""
    return pipeline_outputs["catalogue"] / "fma_small"


@pytest.fixture(scope="module")
def tables(pipeline_outputs) -> str:
    return str(pipeline_outputs["tables"])


@pytest.fixture(scope="module")
def server(music, tmp_path_factory):
    state = tmp_path_factory.mktemp("supysonic")
    library = state / "library"
    shutil.copytree(music, library)
    (library / STRANGER).parent.mkdir()
    soundfile.write(library / STRANGER, np.zeros(8000, dtype=np.float32), 8000)
    with programs.supysonic_server(library, state / "server", USERS) as url:
        yield url


@pytest.fixture
def password(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, USERS["alice"])


def api(url: str, user: str, method: str, **params) -> dict:
    """One Subsonic call as ``user`` (plain password), asserted to succeed."""
    answer = httpx.post(f"{url}/rest/{method}.view", timeout=30,
                        data={"u": user, "p": USERS[user], "c": "tests", "v": "1.12.0", "f": "json", **params}).json()
    assert answer["subsonic-response"]["status"] == "ok", answer
    return answer["subsonic-response"]


def song_ids(url: str) -> dict[int, str]:
    """The server's song id of each catalogue track (FMA's layout: the file's name is the track id)."""
    songs = api(url, "alice", "search3", query="", songCount=500, artistCount=0, albumCount=0)["searchResult3"]["song"]
    return {int(Path(s["path"]).stem): s["id"] for s in songs if Path(s["path"]).stem.isdigit()}


def playlists(url: str, user: str, name: str) -> list[list[int]]:
    """The track ids of each playlist of ``user``'s own called ``name``."""
    found = []
    for playlist in api(url, user, "getPlaylists")["playlists"].get("playlist", []):
        if playlist["name"] == name and playlist["owner"] == user:
            entries = api(url, user, "getPlaylist", id=playlist["id"])["playlist"].get("entry", [])
            found.append([int(Path(e["path"]).stem) for e in entries])
    return found


def cli_ids(capsys, *argv: str) -> list[int]:
    capsys.readouterr()  # what came before
    assert main([*argv, "--format", "json"]) == 0
    return [row["track_id"] for row in json.loads(capsys.readouterr().out)]


def push(tables: str, server: str, music: Path, kind: str, playlist: str, *flags: str, user: str = "alice") -> int:
    return main(["subsonic", kind, "--tables", tables, "--server", server, "--user", user, "--music-dir", str(music),
                 "--playlist", playlist, *flags])


@pytest.fixture(scope="module")
def ids(tables) -> list[int]:
    from playlists import load_tables

    return load_tables(tables).ids.tolist()


def test_radio_journey_and_like_are_the_commands_playlists(tables, server, music, ids, password, capsys):
    cases = [
        ("radio", ["--seed", str(ids[0]), "-n", "5"]),
        ("radio", ["--seed", str(ids[3]), "-n", "6", "--max-per-artist", "1", "--variety", "0.3"]),
        ("journey", ["--from", str(ids[0]), "--to", str(ids[-1]), "-n", "7"]),
        ("journey", ["--via", str(ids[1]), str(ids[10]), str(ids[20]), "-n", "8", "--avoid", str(ids[2])]),
        ("like", ["--seeds", str(ids[4]), str(ids[-4]), "-n", "6", "--exclude-artist"]),
    ]
    for number, (kind, flags) in enumerate(cases):
        name = f"wavelist {kind} {number}"
        assert push(tables, server, music, kind, name, *flags) == 0
        out, err = capsys.readouterr()
        assert out.startswith(f"created the playlist '{name}' of 'alice' at {server}: ")
        expected = cli_ids(capsys, kind, "--tables", tables, *flags)
        assert playlists(server, "alice", name) == [expected], (kind, flags)
        assert f"matched {len(ids)} of the {len(ids) + 1} songs" in err and "1 unmatched" in err
        assert "not in the tables: zz/Stranger red.mp3 (id " in err and "\x1b" not in err


def test_the_song_playing_now_fills_a_missing_seed(tables, server, music, ids, password, capsys):
    playing = ids[7]
    with httpx.stream("POST", f"{server}/rest/stream.view", timeout=30,  # alice plays it
                      data={"u": "alice", "p": USERS["alice"], "c": "tests", "v": "1.12.0",
                            "id": song_ids(server)[playing]}) as response:
        assert response.status_code == 200
    assert push(tables, server, music, "radio", "now", "-n", "5") == 0
    assert playlists(server, "alice", "now") == [cli_ids(capsys, "radio", "--tables", tables, "--seed", str(playing),
                                                         "-n", "5")]
    assert push(tables, server, music, "journey", "now", "--to", str(ids[-1]), "-n", "6") == 0
    journey = cli_ids(capsys, "journey", "--tables", tables, "--from", str(playing), "--to", str(ids[-1]), "-n", "6")
    assert playlists(server, "alice", "now") == [journey] and journey[0] == playing


def test_a_rerun_replaces_the_songs_and_no_other_playlist_changes(tables, server, music, ids, password, capsys):
    songs = song_ids(server)
    api(server, "alice", "createPlaylist", name="mine", songId=[songs[ids[1]], songs[ids[2]]])
    api(server, "bob", "createPlaylist", name="mix", songId=[songs[ids[3]]])
    bobs = next(p for p in api(server, "bob", "getPlaylists")["playlists"]["playlist"] if p["name"] == "mix")
    api(server, "bob", "updatePlaylist", playlistId=bobs["id"], public="true")  # alice sees it, cannot change it
    assert any(p["owner"] == "bob" for p in api(server, "alice", "getPlaylists")["playlists"]["playlist"])

    assert push(tables, server, music, "radio", "mix", "--seed", str(ids[0]), "-n", "5") == 0
    assert push(tables, server, music, "radio", "mix", "--seed", str(ids[-1]), "-n", "4") == 0
    assert "replaced the songs of the playlist 'mix'" in capsys.readouterr().out
    second = cli_ids(capsys, "radio", "--tables", tables, "--seed", str(ids[-1]), "-n", "4")
    assert playlists(server, "alice", "mix") == [second]  # one playlist, the second run's songs
    assert playlists(server, "alice", "mine") == [[ids[1], ids[2]]]
    assert playlists(server, "bob", "mix") == [[ids[3]]]


def test_the_password_from_a_file_and_the_fallback_from_tokens(tables, server, music, ids, tmp_path, monkeypatch,
                                                               capsys):
    from wavelist.subsonic import Client

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    secret = tmp_path / "password"
    secret.write_text(USERS["bob"] + "\n")
    assert push(tables, server, music, "like", "bob's", "--seeds", str(ids[5]), "-n", "3", "--password-file",
                str(secret), user="bob") == 0
    assert playlists(server, "bob", "bob's") == [cli_ids(capsys, "like", "--tables", tables, "--seeds", str(ids[5]),
                                                         "-n", "3")]
    with Client(server, "bob", USERS["bob"]) as client:
        assert client.token_auth
        client.login()
        assert not client.token_auth  # supysonic has no token authentication: the password was sent instead


def test_user_errors_are_one_line(tables, server, music, ids, tmp_path, monkeypatch, capsys):
    nowhere = f"http://127.0.0.1:{programs.free_port()}"
    cases = [
        ({PASSWORD_ENV: "wrong"}, (server, "alice", music, "--seed", str(ids[0])),
         f"wrong user name or password for 'alice' at {server}"),
        ({PASSWORD_ENV: USERS["alice"]}, (nowhere, "alice", music, "--seed", str(ids[0])),
         f"cannot reach the Subsonic server at {nowhere} ("),
        ({PASSWORD_ENV: USERS["alice"]}, (server, "alice", tmp_path, "--seed", str(ids[0])),
         f"no song at {server} matched a track of"),
        ({PASSWORD_ENV: USERS["bob"]}, (server, "bob", music), f"'bob' plays nothing at {server} now"),
        ({PASSWORD_ENV: ""}, (server, "alice", music, "--seed", str(ids[0])), f"${PASSWORD_ENV}"),
        ({PASSWORD_ENV: USERS["alice"]}, (f"{server}/elsewhere", "alice", music, "--seed", str(ids[0])),
         "not a Subsonic answer"),
        ({PASSWORD_ENV: USERS["alice"]}, ("localhost:4533", "alice", music, "--seed", str(ids[0])),
         "--server must be the server's base address"),
    ]
    for env, (url, user, folder, *flags), message in cases:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert push(tables, url, folder, "radio", "never", *flags, user=user) == 2, message
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("wavelist subsonic: error: ") and message in last, (message, last)
    monkeypatch.setenv(PASSWORD_ENV, USERS["alice"])
    assert playlists(server, "alice", "never") == []


# ---------------------------------------------------------------------------------------------------------------
# Matching, in-process


@pytest.mark.unit
def test_songs_are_matched_by_path_then_musicbrainz_id_then_artist_and_title(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from playlists import load_tables
    from playlists.synthetic import write_synthetic_tables
    from wavelist.subsonic import Matcher, describe, match_library

    folder = write_synthetic_tables(tmp_path / "tables", 40)
    tracks = pq.read_table(folder / "tracks.parquet")
    mbids = [f"00000000-0000-0000-0000-{i:012d}" for i in tracks["track_id"].to_pylist()]
    column = tracks.schema.get_field_index("musicbrainz_recording_id")
    pq.write_table(tracks.set_column(column, "musicbrainz_recording_id", pa.array(mbids)), folder / "tracks.parquet")
    tables = load_tables(folder)
    matcher = Matcher(tables, str(folder / "audio"))
    artist = tables.column("artist")[tables.row(1004)]
    songs = [
        {"id": "a", "path": "1001.wav"},
        {"id": "b", "path": str(folder / "audio" / "1002.wav")},  # a server that gives absolute paths
        {"id": "c", "path": "Artist/Album/03 - Song.mp3", "musicBrainzId": "00000000-0000-0000-0000-000000001003"},
        {"id": "d", "path": "fake/path.mp3", "artist": "  " + artist.upper().replace(" ", "   "), "title": "song 1004"},
        {"id": "e", "path": "/elsewhere/1005.wav", "artist": "Nobody", "title": "Nothing \x1b[2J"},
        {"id": "f", "path": "1006.wav", "artist": "Artist 0", "title": "Song 1007"},  # the path decides
    ]
    library = match_library(matcher, iter(songs))
    assert library.track_of == {"a": 1001, "b": 1002, "c": 1003, "d": 1004, "f": 1006}
    assert library.song_of[1003] == "c" and library.songs == 6
    assert dict(library.by) == {"path": 3, "MusicBrainz id": 1, "artist and title": 1}
    assert library.unmatched == ["/elsewhere/1005.wav (id e)"]
    assert describe({"id": "x", "artist": "A\x1b]0;title\x07", "title": "B\nC"}) == "A - B C (id x)"
