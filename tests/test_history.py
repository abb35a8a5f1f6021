"""``wavelist profile --history``: ListenBrainz exports and Last.fm-style scrobble CSVs matched to tracks."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from playlists.history import match_plays, read_plays
from wavelist.cli import main

pytestmark = pytest.mark.unit
MBID_1005 = "11111111-2222-3333-4444-000000001005"


@pytest.fixture(scope="module")
def tables_dir(tmp_path_factory):
    """Synthetic tables whose track 1005 carries a MusicBrainz recording id."""
    from playlists.synthetic import write_synthetic_tables

    folder = write_synthetic_tables(tmp_path_factory.mktemp("history"), 300)
    tracks = pq.read_table(folder / "tracks.parquet")
    mbids = [MBID_1005 if i == 1005 else None for i in tracks["track_id"].to_pylist()]
    column = tracks.schema.get_field_index("musicbrainz_recording_id")
    pq.write_table(tracks.set_column(column, "musicbrainz_recording_id", pa.array(mbids, pa.string())),
                   folder / "tracks.parquet")
    return folder


def listen(artist: str, title: str, at: int, mbid: str | None = None) -> str:
    meta = {"artist_name": artist, "track_name": title,
            "additional_info": {"recording_mbid": mbid} if mbid else {}}
    return json.dumps({"listened_at": at, "track_metadata": meta})


def test_listenbrainz_jsonl_by_mbid_then_artist_and_title(tables_dir):
    from playlists import load_tables

    tables = load_tables(tables_dir)
    artist = tables.track(1010)["artist"]
    text = "\n".join([  # newest first, as ListenBrainz exports
        listen("Nobody", "Not Here", 300),
        listen(artist.upper(), "  song  1010 ", 200),
        listen("Renamed Artist", "Renamed Title", 100, MBID_1005),
    ])
    plays = read_plays(text)
    assert [p.at for p in plays] == [100, 200, 300]
    matched = match_plays(tables, plays)
    assert matched.track_ids.tolist() == [1005, 1010] and matched.plays == 3 and matched.by_mbid == 1
    assert matched.summary() == "matched 2 of 3 plays to catalogue tracks (1 by MusicBrainz id, 1 by artist and title)"


def test_lastfm_csv_with_and_without_header(tables_dir):
    from playlists import load_tables

    tables = load_tables(tables_dir)
    a, b = (tables.track(i)["artist"] for i in (1020, 1021))
    header = "uts,utc_time,artist,artist_mbid,album,album_mbid,track,track_mbid\n"
    text = header + f'1700000200,x,"{b}",,Album,,Song 1021,\n1700000100,x,"{a}",,Album,,Song 1020,\n'
    assert match_plays(tables, read_plays(text)).track_ids.tolist() == [1020, 1021]
    bare = f"{b},Album,Song 1021,02 Dec 2026 10:05\n{a},Album,Song 1020,02 Dec 2026 09:05\n"
    assert match_plays(tables, read_plays(bare)).track_ids.tolist() == [1020, 1021]
    assert read_plays("1000\n1001\n") is None and read_plays('[{"track_id": 1000}]') is None


def test_profile_command_says_how_many_plays_matched(tables_dir, tmp_path, capsys):
    history = tmp_path / "listens.jsonl"
    history.write_text("\n".join([listen("x", "y", 1), listen("z", "w", 2, MBID_1005)]) + "\n")
    assert main(["profile", "--tables", str(tables_dir), "--history", str(history), "-n", "4",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "matched 1 of 2 plays" in captured.err
    rows = json.loads(captured.out)
    assert len(rows) == 4 and 1005 not in [r["track_id"] for r in rows] and "to_profile" in rows[0]
    nothing = tmp_path / "scrobbles.csv"
    nothing.write_text("artist,track\nNobody,Nothing\n")
    assert main(["profile", "--tables", str(tables_dir), "--history", str(nothing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matched 0 of 1 plays" in err
