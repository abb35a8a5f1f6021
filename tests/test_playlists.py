import json
from pathlib import Path

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
    import re
    import shutil

    from tests.conftest import table_file

    shutil.copytree(pipeline_outputs["tables"], tmp_path, dirs_exist_ok=True)
    shard = table_file(tmp_path / "embeddings.parquet")
    shard.write_bytes(b"PAR1 not really")
    with pytest.raises(TablesError, match=f"{re.escape(str(shard))} is not a readable Parquet file"):
        load_tables(tmp_path)


def test_least_energy_path_spaces_steps_evenly():
    from playlists.journey import _least_energy_path

    angles = np.radians(np.arange(0, 100, 10))  # 10 points on a quarter circle
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert _least_energy_path(vectors, 3) == [0, 3, 6, 9]
    assert _least_energy_path(vectors, 9) == list(range(10))


# ---- synthetic clustered tables: 8 styles, 10 tracks per artist, 50 stored neighbours -----------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from playlists.synthetic import write_synthetic_tables

    return load_tables(write_synthetic_tables(tmp_path_factory.mktemp("synthetic"), 1200, audio=True))


def _brute_force(tables, scores, banned_rows, n):
    scores = scores.copy()
    scores[list(banned_rows)] = -np.inf
    return [int(tables.ids[i]) for i in np.lexsort((tables.ids, -scores))[:n]]


def test_neighbour_arrays_hold_the_parquet_table(synthetic):
    import pyarrow.parquet as pq

    table = pq.read_table(synthetic.folder / "neighbours.parquet").to_pandas()
    some = table[table.track_id == synthetic.ids[7]].sort_values("rank")
    assert synthetic.neighbour_rows.shape == (len(synthetic), 50)
    assert list(synthetic.ids[synthetic.neighbour_rows[7]]) == list(some.neighbour_id)
    assert np.allclose(synthetic.neighbour_similarities[7], some.similarity)


def test_radio_from_arrays_matches_brute_force(synthetic):
    for row in (0, 500, 1199):
        seed = int(synthetic.ids[row])
        expected = _brute_force(synthetic, synthetic.vectors @ synthetic.vectors[row], [row], 20)
        assert [e.track_id for e in radio(synthetic, seed, 20)] == expected


def test_radio_can_leave_out_the_seed_artist(synthetic):
    seed = int(synthetic.ids[10])
    artist = synthetic.track(seed)["artist_id"]
    plain = radio(synthetic, seed, 10)
    assert any(synthetic.track(e.track_id)["artist_id"] == artist for e in plain)  # else the test proves nothing
    entries = radio(synthetic, seed, 10, exclude_artist=True)
    assert len(entries) == 10 and all(synthetic.track(e.track_id)["artist_id"] != artist for e in entries)


def test_radio_variety_spreads_the_playlist_and_keeps_its_style(synthetic):
    seed = int(synthetic.ids[3])

    def spread(entries):
        vectors = np.stack([synthetic.vector(e.track_id) for e in entries])
        return float((vectors @ vectors.T)[np.triu_indices(len(entries), 1)].mean())

    plain, varied = radio(synthetic, seed, 15), radio(synthetic, seed, 15, variety=0.5)
    assert len({e.track_id for e in varied}) == 15 and seed not in [e.track_id for e in varied]
    assert spread(varied) < spread(plain)
    genre = synthetic.track(seed)["genre"]
    assert np.mean([synthetic.track(e.track_id)["genre"] == genre for e in varied]) >= 0.8


def test_like_gives_each_seed_its_share(synthetic):
    from playlists import like

    genre = synthetic.column("genre")
    seeds = [int(synthetic.ids[genre == "Style1"][0]), int(synthetic.ids[genre == "Style5"][0])]
    entries = like(synthetic, seeds, 12)
    styles = [synthetic.track(e.track_id)["genre"] for e in entries]
    assert len(entries) == 12 and not set(seeds) & {e.track_id for e in entries}
    assert styles.count("Style1") >= 5 and styles.count("Style5") >= 5
    rows = [synthetic.row(s) for s in seeds]
    blend = synthetic.vectors @ synthetic.vectors[rows].mean(axis=0)
    assert all(abs(e.similarity - blend[synthetic.row(e.track_id)]) < 1e-5 for e in entries)


def test_like_of_alike_seeds_is_the_nearest_to_their_mean(synthetic):
    from playlists import like

    seeds = [int(i) for i in synthetic.ids[synthetic.column("genre") == "Style3"][:3]]
    rows = [synthetic.row(s) for s in seeds]
    entries = like(synthetic, seeds, 10)
    assert {synthetic.track(e.track_id)["genre"] for e in entries} == {"Style3"}
    expected = _brute_force(synthetic, synthetic.vectors @ synthetic.vectors[rows].mean(axis=0), rows, 10)
    assert len(set(expected) & {e.track_id for e in entries}) >= 7  # turns between seeds change a few


def test_journey_beats_the_original_line_method_on_smoothness(synthetic):
    """The original study took, for evenly spaced points on the line A -> B, the nearest unused track."""
    from playlists.baselines import line_journey

    rng = np.random.default_rng(1)
    ours, line = [], []
    for _ in range(15):
        start, end = (int(i) for i in rng.choice(synthetic.ids, 2, replace=False))
        ours.append(smoothness(synthetic, journey(synthetic, start, end, 20)))
        line.append(smoothness(synthetic, line_journey(synthetic, start, end, 20)))
    assert all(o["monotonic_fraction"] == 1.0 for o in ours)
    assert np.mean([x["monotonic_fraction"] for x in line]) < 0.9
    assert np.mean([o["min_step_similarity"] > x["min_step_similarity"] for o, x in zip(ours, line)]) >= 0.8
    assert np.mean([o["min_step_similarity"] for o in ours]) > np.mean([x["min_step_similarity"] for x in line]) + 0.1


def test_journey_via_stops_in_order(synthetic):
    from playlists import journey_via

    stops = [int(i) for i in synthetic.ids[[5, 600, 1100]]]
    entries = journey_via(synthetic, stops, 15)
    ids = [e.track_id for e in entries]
    assert len(ids) == 15 and len(set(ids)) == 15 and ids[0] == stops[0] and ids[-1] == stops[-1]
    assert ids.index(stops[0]) < ids.index(stops[1]) < ids.index(stops[2])
    assert smoothness(synthetic, entries, stops)["monotonic_fraction"] == 1.0
    avoid = ids[3]
    assert avoid not in [e.track_id for e in journey_via(synthetic, stops, 15, exclude=[avoid])]


def test_leg_steps_share_the_steps():
    from playlists.journey import leg_steps

    assert leg_steps(np.array([1.0, 1.0]), 10) == [5, 5]
    assert leg_steps(np.array([3.0, 1.0]), 9) == [6, 3]  # one each, the other 7 shared 5.25 : 1.75
    assert leg_steps(np.array([0.01, 5.0, 0.01]), 3) == [1, 1, 1]


def test_titles_resolve_and_unknown_titles_suggest(synthetic):
    assert synthetic.resolve("song 1042") == 1042 and synthetic.resolve("1042") == 1042
    with pytest.raises(UnknownTrack, match="no track id, title, artist or album 'Sonng 1042'.*did you mean 'Song"):
        synthetic.resolve("Sonng 1042")
    assert 1042 in synthetic.search("song 1042")


def test_m3u_has_absolute_paths_that_exist_and_reads_back(synthetic, tmp_path, monkeypatch):
    from playlists.output import read_track_list

    entries = radio(synthetic, 1000, 5)
    lines = render(synthetic, entries, "m3u").splitlines()
    paths = lines[2::2]
    assert lines[0] == "#EXTM3U" and len(paths) == 5
    assert all(p.startswith("/") and (synthetic.folder / "audio").samefile(Path(p).parent) for p in paths)
    for fmt, suffix in (("m3u", "m3u8"), ("json", "json")):
        (tmp_path / f"p.{suffix}").write_text(render(synthetic, entries, fmt))
        assert read_track_list(synthetic, tmp_path / f"p.{suffix}") == [e.track_id for e in entries]
    (tmp_path / "ids.txt").write_text("1000\n# a comment\n\naudio/1001.wav\n")
    monkeypatch.chdir(synthetic.folder)
    assert read_track_list(synthetic, tmp_path / "ids.txt") == [1000, 1001]
    (tmp_path / "bad.txt").write_text("1000\nnot-a-track.mp3\n")
    with pytest.raises(UnknownTrack, match="bad.txt line 2: 'not-a-track.mp3'"):
        read_track_list(synthetic, tmp_path / "bad.txt")


def test_relative_paths_become_absolute():
    from playlists.output import player_path

    assert player_path("music/a.mp3") == str(Path.cwd() / "music/a.mp3")
    assert player_path("gs://bucket/a.mp3") == "gs://bucket/a.mp3"


def test_projector_export_reads_back(synthetic, tmp_path):
    from playlists.projector import write_projector

    out = Path(write_projector(synthetic, str(tmp_path / "projector")))
    vectors = np.loadtxt(out / "vectors.tsv", delimiter="\t")
    metadata = (out / "metadata.tsv").read_text().splitlines()
    assert vectors.shape == synthetic.vectors.shape and np.allclose(vectors, synthetic.vectors, atol=1e-6)
    assert metadata[0] == "track_id\ttitle\tartist\tgenre" and len(metadata) == len(synthetic) + 1
    assert metadata[1].split("\t") == ["1000", "Song 1000", synthetic.track(1000)["artist"], synthetic.track(1000)["genre"]]
    assert 'tensor_path: "vectors.tsv"' in (out / "projector_config.pbtxt").read_text()
    assert json.loads((out / "projector_config.json").read_text())["embeddings"][0]["tensorShape"] == [1200, 64]


def test_map_figure_colours_by_genre_and_draws_the_playlist(synthetic):
    from playlists.mapview import coordinates, map_figure

    playlist = [1000, 1001, 1002]
    figure = map_figure(synthetic, playlist, highlight=1000)
    genres = [t.name for t in figure.data if t.name.startswith("Style")]
    assert genres == sorted(set(synthetic.column("genre")))
    assert sum(len(t.x) for t in figure.data if t.name in genres) == len(synthetic)
    path = next(t for t in figure.data if t.name == "playlist")
    assert np.allclose(path.x, coordinates(synthetic)[[0, 1, 2], 0])
    hover = figure.data[0].text[0]
    track = int(hover.rsplit("track ", 1)[1])
    assert hover.startswith(f"{synthetic.track(track)['artist']} - {synthetic.track(track)['title']}<br>")
    assert synthetic.track(track)["genre"] in hover
    assert list(path.text) == ["1", "2", "3"] and "lines" in path.mode
    start, end = (next(t for t in figure.data if t.name == name) for name in ("start", "end"))
    assert (start.x[0], end.x[0]) == (path.x[0], path.x[-1])
    points = next(t for t in map_figure(synthetic, playlist, path=False).data if t.name == "playlist")
    assert points.mode == "markers" and not any(t.name == "start" for t in map_figure(synthetic, playlist,
                                                                                      path=False).data)


@pytest.fixture(scope="module")
def ten_thousand(tmp_path_factory):
    from playlists.synthetic import write_synthetic_tables

    return load_tables(write_synthetic_tables(tmp_path_factory.mktemp("ten_thousand"), 10_000, k=20))


def test_journey_from_the_index_keeps_its_contract_and_smoothness(ten_thousand, monkeypatch):
    """Above ``vector_index.INDEX_ABOVE`` tracks (lowered here) a journey's candidates come from the approximate
    index and the stored neighbours, not a full scan: the same endpoints, n tracks, no repeats, every step
    forward, and on average no less smooth than the full scan's journeys between the same tracks."""
    import importlib

    from playlists import vector_index
    from playlists.service import make_playlist

    journeys = importlib.import_module("playlists.journey")  # the module (the package exports the function)

    tables = ten_thousand
    rng = np.random.default_rng(3)
    pairs = [tuple(int(i) for i in rng.choice(tables.ids, 2, replace=False)) for _ in range(12)]
    scanned = [make_playlist(tables, "journey", start=a, end=b, n=20) for a, b in pairs]
    assert tables._vector_index is None  # 10,000 tracks: below the threshold, a full scan and no index

    pools = []
    closest = journeys._closest_to_path

    def choose(*args, pool=None):
        pools.append(len(tables) if pool is None else len(pool))
        return closest(*args, pool=pool)

    monkeypatch.setattr(journeys, "_closest_to_path", choose)
    monkeypatch.setattr(vector_index, "INDEX_ABOVE", 5_000)
    indexed = [make_playlist(tables, "journey", start=a, end=b, n=20) for a, b in pairs]
    assert tables._vector_index is not None and len(tables.vector_index) == len(tables)
    assert pools and max(pools) < len(tables) / 4  # every choice among a pool the index found: no full scan
    for (a, b), playlist in zip(pairs, indexed):
        ids = [e.track_id for e in playlist.entries]
        assert (ids[0], ids[-1], len(ids), len(set(ids))) == (a, b, 20, 20)
        assert playlist.smoothness["monotonic_fraction"] == 1.0
    for key in ("min_step_similarity", "mean_step_similarity"):
        assert np.mean([p.smoothness[key] for p in indexed]) >= np.mean([p.smoothness[key] for p in scanned]) - 1e-6
