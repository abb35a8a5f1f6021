import json

import numpy as np
import pytest

from playlists import UnknownTrack, journey, load_tables, radio, smoothness
from playlists.journey import progress
from playlists.output import render
from playlists.radio import radio_genre_agreement
from playlists.tables import TablesError


@pytest.fixture(scope="module")
def tables(pipeline_outputs):
    return load_tables(pipeline_outputs["tables"])


def test_radio_is_the_nearest_tracks_best_first(tables):
    seed = int(tables.ids[3])
    entries = radio(tables, seed, 5)
    assert len(entries) == 5 and seed not in [e.track_id for e in entries]
    sims = tables.vectors @ tables.vector(seed)
    sims[tables.row(seed)] = -np.inf
    assert [e.track_id for e in entries] == [int(tables.ids[i]) for i in np.argsort(-sims, kind="stable")[:5]]
    assert all(a.similarity >= b.similarity for a, b in zip(entries, entries[1:]))


def test_radio_longer_than_stored_neighbours_ranks_whole_catalogue(tables):
    entries = radio(tables, int(tables.ids[0]), 20)  # the fixture stores k=10
    assert len(entries) == min(20, len(tables) - 1)
    assert len({e.track_id for e in entries}) == len(entries)


def test_unknown_track_names_it_and_suggests(tables):
    known = str(int(tables.ids[0]))
    with pytest.raises(UnknownTrack, match=f"track {known}9 is not in .*did you mean {known}"):
        radio(tables, int(known + "9"), 5)


def test_journey_runs_from_a_to_b_without_repeats_and_advances(tables):
    start, end = int(tables.ids[0]), int(tables.ids[-1])
    entries = journey(tables, start, end, 8)
    ids = [e.track_id for e in entries]
    assert ids[0] == start and ids[-1] == end and len(set(ids)) == len(ids) and 2 <= len(ids) <= 8
    positions = progress(np.stack([tables.vector(i) for i in ids]), tables.vector(start), tables.vector(end))
    assert np.all(np.diff(positions) > 0)
    figures = smoothness(tables, entries)
    assert figures["monotonic_fraction"] == 1.0
    assert figures["min_step_similarity"] <= figures["mean_step_similarity"]


def test_journey_needs_two_tracks(tables):
    with pytest.raises(ValueError, match="two different tracks"):
        journey(tables, int(tables.ids[0]), int(tables.ids[0]), 5)


def test_output_formats(tables):
    entries = radio(tables, int(tables.ids[0]), 3)
    rows = json.loads(render(tables, entries, "json"))
    assert [r["track_id"] for r in rows] == [e.track_id for e in entries]
    assert all({"track_id", "genre", "path", "similarity"} <= set(r) for r in rows)
    m3u = render(tables, entries, "m3u").splitlines()
    assert m3u[0] == "#EXTM3U" and m3u[2] == rows[0]["path"] and len(m3u) == 7
    assert str(entries[0].track_id) in render(tables, entries, "table")


def test_genre_agreement_is_a_share(tables):
    assert 0.0 <= radio_genre_agreement(tables, 5) <= 1.0


def test_missing_or_corrupt_tables_are_named(tmp_path, pipeline_outputs):
    with pytest.raises(TablesError, match="not a folder"):
        load_tables(tmp_path / "nowhere")
    with pytest.raises(TablesError, match="embeddings.parquet is missing"):
        load_tables(tmp_path)
    for item in pipeline_outputs["tables"].iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    (tmp_path / "embeddings.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(TablesError, match="embeddings.parquet is not a readable Parquet file"):
        load_tables(tmp_path)


def test_least_energy_path_spaces_steps_evenly():
    from playlists.journey import _least_energy_path

    angles = np.radians(np.arange(0, 100, 10))  # 10 points on a quarter circle
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert _least_energy_path(vectors, 3) == [0, 3, 6, 9]
    assert _least_energy_path(vectors, 9) == list(range(10))
