"""The playlist subcommands of the ``wavelist`` command on synthetic tables."""
import json

import pytest

from wavelist.cli import main

pytestmark = pytest.mark.unit  # pure code: no pipeline, no training


@pytest.fixture(scope="module")
def tables_dir(tmp_path_factory):
    from playlists.synthetic import write_synthetic_tables

    return str(write_synthetic_tables(tmp_path_factory.mktemp("cli"), 400, audio=True))


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_radio_by_title_with_options(tables_dir, capsys):
    assert main(["radio", "--tables", tables_dir, "--seed", "Song 1010", "-n", "6", "--exclude-artist",
                 "--variety", "0.3", "--format", "json"]) == 0
    rows = _json(capsys)
    assert len(rows) == 6 and 1010 not in [r["track_id"] for r in rows]


def test_radio_caps_each_artist(tables_dir, capsys):
    from collections import Counter

    assert main(["radio", "--tables", tables_dir, "--seed", "1010", "-n", "12", "--max-per-artist", "1",
                 "--format", "json"]) == 0
    rows = _json(capsys)
    assert len(rows) == 12 and max(Counter(r["artist"] for r in rows).values()) == 1


def test_like_blends_seeds(tables_dir, capsys):
    assert main(["like", "--tables", tables_dir, "--seeds", "1001", "1002", "-n", "5", "--format", "json"]) == 0
    assert len({r["track_id"] for r in _json(capsys)} - {1001, 1002}) == 5


def test_journey_via_reports_smoothness(tables_dir, capsys):
    assert main(["journey", "--tables", tables_dir, "--via", "1000", "1200", "1399", "-n", "10",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    ids = [r["track_id"] for r in json.loads(captured.out)]
    assert ids[0] == 1000 and 1200 in ids and ids[-1] == 1399 and len(ids) == 10
    assert "smoothness: min_step_similarity" in captured.err and "monotonic_fraction 1.000" in captured.err


def test_journey_needs_its_ends(tables_dir, capsys):
    assert main(["journey", "--tables", tables_dir, "--from", "1000"]) == 2
    assert "needs --from A --to B" in capsys.readouterr().err


def test_m3u_output_opens_in_a_player(tables_dir, tmp_path, capsys):
    from pathlib import Path

    out = tmp_path / "radio.m3u8"
    assert main(["radio", "--tables", tables_dir, "--seed", "1000", "-n", "3", "--format", "m3u",
                 "--output", str(out)]) == 0
    paths = out.read_text().splitlines()[2::2]
    assert len(paths) == 3 and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert "warning" not in capsys.readouterr().err


def test_unknown_title_is_one_line_error(tables_dir, capsys):
    assert main(["like", "--tables", tables_dir, "--seeds", "1000", "Sonng 1001"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wavelist like: error: no track id, title, artist or album 'Sonng 1001'") and "\n" not in err
    assert "did you mean 'Song" in err


def test_map_draws_a_given_playlist(tables_dir, tmp_path):
    playlist = tmp_path / "p.txt"
    playlist.write_text("1000\n1005\n1007\n")
    out = tmp_path / "map.html"
    assert main(["map", "--tables", tables_dir, "--out", str(out), "--playlist", str(playlist)]) == 0
    html = out.read_text()
    assert '"name":"playlist"' in html and "scatter3d" in html and "Song 1005" in html


def test_projector_writes_the_three_files(tables_dir, tmp_path, capsys):
    assert main(["projector", "--tables", tables_dir, "--out", str(tmp_path / "proj")]) == 0
    assert {p.name for p in (tmp_path / "proj").iterdir()} >= {"vectors.tsv", "metadata.tsv", "projector_config.pbtxt"}


def test_app_refuses_a_bad_tables_folder_in_one_line(tmp_path, capsys):
    assert main(["app", "--tables", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wavelist app: error:") and "nowhere is not a folder" in err and "\n" not in err


def test_seed_by_words_and_ambiguous_words_list_candidates(tables_dir, capsys):
    from playlists import load_tables

    artist = load_tables(tables_dir).track(1010)["artist"]
    assert main(["radio", "--tables", tables_dir, "--seed", f"{artist.lower()} 1010", "-n", "3",
                 "--format", "json"]) == 0
    assert len(_json(capsys)) == 3
    assert main(["journey", "--tables", tables_dir, "--from", "1000", "--to", artist]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{artist!r} matches" in err and f"{artist} - Song" in err


def test_columns_say_what_the_number_is(tables_dir, capsys):
    assert main(["radio", "--tables", tables_dir, "--seed", "1000", "-n", "3", "--format", "json"]) == 0
    rows = _json(capsys)
    assert all("to_seed" in r and "similarity" not in r and r["duration_s"] == 30.0 for r in rows)
    assert main(["journey", "--tables", tables_dir, "--from", "1000", "--to", "1399", "-n", "5"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:3] == ["#", "track_id", "step"]
    assert main(["like", "--tables", tables_dir, "--seeds", "1000", "1001", "-n", "2"]) == 0
    assert "to_seeds" in capsys.readouterr().out


def test_m3u_durations_and_paths_relative_to_a_folder(tables_dir, tmp_path):
    from pathlib import Path

    out = tmp_path / "lists" / "radio.m3u8"
    out.parent.mkdir()
    assert main(["radio", "--tables", tables_dir, "--seed", "1000", "-n", "3", "--format", "m3u",
                 "--output", str(out), "--relative-to", str(out.parent)]) == 0
    lines = out.read_text().splitlines()
    assert all(line.startswith("#EXTINF:30,Artist ") for line in lines[1::2])
    assert all(not Path(p).is_absolute() and (out.parent / p).is_file() for p in lines[2::2])


def test_tables_written_before_tags_still_load(tables_dir, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from playlists import load_tables
    from schemas import tables as schemas

    old = tmp_path / "old"
    shutil.copytree(tables_dir, old)
    tracks = pq.read_table(old / "tracks.parquet")
    pq.write_table(tracks.select(schemas.TRACKS_BEFORE_TAGS.names), old / "tracks.parquet")
    loaded = load_tables(old)
    assert loaded.column("album")[0] is None and loaded.resolve("Song 1000") == 1000

