"""Alchemy, clusters, profiles and capped journeys on synthetic clustered tables (8 styles): each test checks a
style kept or removed as asked, which a random embedding would fail."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from playlists import journey_via, load_tables
from playlists.alchemy import alchemy
from playlists.discover import clusters, write_clusters
from playlists.profile import profile
from wavelist.cli import main

pytestmark = pytest.mark.unit  # pure code: no pipeline, no training


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    from playlists.synthetic import write_synthetic_tables

    return load_tables(write_synthetic_tables(tmp_path_factory.mktemp("discover"), 1200, audio=True))


def style_ids(tables, style, count):
    return [int(i) for i in tables.ids[tables.column("genre") == style][:count]]


def genres(tables, entries):
    return Counter(tables.track(e.track_id)["genre"] for e in entries)


def test_alchemy_subtracting_a_style_removes_it(tables):
    a, b = style_ids(tables, "Style2", 1), style_ids(tables, "Style6", 4)
    mixed = genres(tables, alchemy(tables, a + b[:1], [], 20))
    assert mixed["Style6"] > 0  # adding both keeps some of each ...
    entries = alchemy(tables, a + b[:1], b[1:], 20)
    found = genres(tables, entries)
    assert found["Style6"] == 0 and found["Style2"] >= 15  # ... subtracting Style6 tracks removes Style6
    assert not {e.track_id for e in entries} & set(a + b)


def test_alchemy_that_cancels_out_is_an_error(tables):
    with pytest.raises(ValueError, match="zero vector"):
        alchemy(tables, [1000], [1000])


def test_profile_of_one_style_gives_that_style_and_skips_what_was_played(tables):
    history = style_ids(tables, "Style4", 12)
    entries = profile(tables, history, 30)
    assert genres(tables, entries)["Style4"] >= 27
    assert len(entries) == 30 and not {e.track_id for e in entries} & set(history)


def test_profile_weights_recent_plays_more(tables):
    old, recent = style_ids(tables, "Style1", 10), style_ids(tables, "Style7", 10)
    found = genres(tables, profile(tables, old + recent, 20, half_life=3))
    assert found["Style7"] >= 16 > found["Style1"]
    found = genres(tables, profile(tables, recent + old, 20, half_life=3))
    assert found["Style1"] >= 16 > found["Style7"]


def test_clusters_follow_the_styles(tables, tmp_path):
    found, silhouette = clusters(tables, 8)
    assert sorted(e.track_id for c in found for e in c.entries) == sorted(int(i) for i in tables.ids)
    assert silhouette > 0.1
    assert np.mean([c.genre_share for c in found]) > 0.7 and len({c.genre for c in found}) >= 6
    assert all(c.name.startswith(c.genre) and c.entries[0].track_id == c.central_track for c in found)
    out = Path(write_clusters(tables, found, str(tmp_path / "clusters")))
    assert len(list(out.glob("*.m3u8"))) == 8
    import pyarrow.parquet as pq

    assert pq.read_table(out / "clusters.parquet").num_rows == len(tables)


def test_journey_avoids_tracks_and_caps_artists(tables):
    stops = [int(tables.ids[0]), int(tables.ids[900])]
    plain = [e.track_id for e in journey_via(tables, stops, 12)]
    artist = {i: tables.track(i)["artist_id"] for i in tables.ids.tolist()}
    assert max(Counter(artist[i] for i in plain[1:-1]).values()) > 1  # else the cap proves nothing
    capped = [e.track_id for e in journey_via(tables, stops, 12, exclude=[plain[2]], max_per_artist=1)]
    assert plain[2] not in capped and capped[0] == stops[0] and capped[-1] == stops[1]
    counts = Counter(artist[i] for i in capped)
    assert all(n <= 1 for a, n in counts.items() if a not in (artist[stops[0]], artist[stops[1]]))
    stops = [int(tables.ids[0]), int(tables.ids[900]), int(tables.ids[5])]  # back to the first artist's style
    capped = [e.track_id for e in journey_via(tables, stops, 16, max_per_artist=2)]
    counts = Counter(artist[i] for i in capped)
    assert len(capped) == 16 and max(counts.values()) <= 2, counts


def test_cli_alchemy_clusters_profile(tables, tmp_path, capsys):
    folder = str(tables.folder)
    assert main(["alchemy", "--tables", folder, "--add", "1000", "1001", "--subtract", "1002", "-n", "4",
                 "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4
    assert main(["clusters", "--tables", folder, "--k", "4", "--out", str(tmp_path / "c"), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["clusters"]) == 4 and -1 <= summary["silhouette"] <= 1
    history = tmp_path / "history.m3u8"
    assert main(["radio", "--tables", folder, "--seed", "1000", "-n", "5", "--format", "m3u",
                 "--output", str(history)]) == 0
    assert main(["profile", "--tables", folder, "--history", str(history), "-n", "6", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6
    assert main(["clusters", "--tables", folder, "--k", "1"]) == 2
    assert "--k must be between 2 and" in capsys.readouterr().err
