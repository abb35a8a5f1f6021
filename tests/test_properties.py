"""Property tests (hypothesis): the catalogue readers on odd CSVs, and the neighbour merge."""
from __future__ import annotations

import csv
import io
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from core import catalogue as cat
from core.neighbours import merge_block_top_k, merge_top_k
from storage import files

pytestmark = pytest.mark.unit  # pure code: no pipeline, no training

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# any text a spreadsheet may hold: quotes, commas, newlines, non-ASCII; not NUL or a bare CR (Python's csv
# writer leaves a field with a CR unquoted, so no reader could get it back),
# not lone surrogates (not encodable as UTF-8)
cell_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\r"), max_size=12)
words = cell_text.map(str.strip).filter(bool)
ids = st.integers(min_value=0, max_value=2**63 - 1)


def through_a_file(tmp_path, text: str, name: str):
    """A handle on ``text`` written to a file and opened the way ingest opens it."""
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return files.open_text(str(path))


@st.composite
def labels_files(draw):
    """(CSV text, expected labels): unique paths, a random subset of the optional columns in random order,
    unknown extra columns, values with quotes, commas and line ends, any csv quoting style."""
    columns = draw(st.lists(st.sampled_from(cat.LABEL_COLUMNS), unique=True))
    extra = draw(st.lists(st.sampled_from(["comment", "bpm", "Genre"]), unique=True, max_size=2))
    header = draw(st.permutations(["path", *columns, *extra]))
    paths = draw(st.lists(words.filter(lambda p: not p.startswith("./")), min_size=1, max_size=6, unique=True))
    rows, expected = [], {}
    for path in paths:
        values = {"track_id": draw(st.none() | ids), "artist_id": draw(st.none() | ids),
                  "track_number": draw(st.none() | st.integers(1, cat.MAX_TRACK_NUMBER)),
                  **{k: draw(st.none() | cell_text) for k in cat.LABEL_COLUMNS if k not in cat.INTEGER_LABELS}}
        cells = {"path": path, **{k: draw(cell_text) for k in extra},
                 **{k: "" if values[k] is None else str(values[k]) for k in columns}}
        rows.append([cells[h] for h in header])
        expected[path] = {k: (None if k not in columns or values[k] is None else
                              values[k] if isinstance(values[k], int) else values[k].strip() or None)
                          for k in cat.LABEL_COLUMNS}
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
                        lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue(), expected


@SETTINGS
@given(labels_files())
def test_labels_csv_reads_back_what_was_written(tmp_path, case):
    text, expected = case
    with through_a_file(tmp_path, text, "labels.csv") as handle:
        assert dict(cat.read_labels(handle)) == expected


@SETTINGS
@given(labels_files(), st.data())
def test_folder_rows_keep_every_label_and_every_file(case, data):
    _, labels = case
    labels = {p: v for p, v in labels.items() if cat.label_path(p, "/music") == p}  # normalised, inside
    assume(labels)
    files = data.draw(st.lists(st.sampled_from(sorted(labels)), unique=True))
    rows, rejects = cat.folder_tracks([f"/music/{p}" for p in files], root="/music", labels=labels)
    rows = cat.assign_ids(rows)  # as ingest does: no file is read here, so an id comes from its path
    assert rejects == []
    assert sorted(r["path"] for r in rows) == sorted(f"/music/{p}" for p in labels)  # unread labels kept
    for row in rows:
        label = labels[row["path"][len("/music/"):]]
        assert row["genre"] == label["genre"] and row["artist"] == label["artist"]  # any genre, as written
        assert {k: row[k] for k in cat.TAG_LABELS} == {k: label[k] for k in cat.TAG_LABELS}  # album ... ids
        if label["track_id"] is not None:
            assert row["track_id"] == label["track_id"]
        assert row["split"] == cat.split_for(row["track_id"], label["artist_id"], label["artist"])


def test_labels_listing_a_file_twice_make_one_track_and_a_duplicate_reject():
    labels = cat.read_labels(io.StringIO("path,genre\na.mp3,Rock\n./a.mp3,Folk\nsub/../a.mp3,Jazz\n"))
    rows, rejects = cat.folder_tracks(["/music/a.mp3"], root="/music", labels=labels)
    assert [(r["path"], r["genre"]) for r in rows] == [("/music/a.mp3", "Rock")]
    assert [r["stage"] for r in rejects] == ["catalogue", "catalogue"]
    assert all(r["reason"].startswith("duplicate: the labels CSV lists this file twice") for r in rejects)


FMA_OPTIONAL = [("track", "title"), ("artist", "id"), ("artist", "name"), ("set", "split"), ("set", "subset")]


@st.composite
def fma_tables(draw):
    """(tracks.csv text, rows): FMA's two-row header, random optional columns, any genre and title text."""
    columns = [("track", "genre_top"), *draw(st.lists(st.sampled_from(FMA_OPTIONAL), unique=True))]
    track_ids = draw(st.lists(st.integers(0, 10**9), min_size=1, max_size=8, unique=True))
    cells = {
        ("track", "genre_top"): st.none() | words,
        ("track", "title"): st.none() | words,
        ("artist", "id"): st.none() | st.integers(0, 10**6),
        ("artist", "name"): st.none() | words,
        ("set", "split"): st.none() | st.sampled_from(sorted(cat.FMA_SPLIT_NAMES)),
        ("set", "subset"): st.just("small"),
    }
    table = pd.DataFrame({c: [draw(cells[c]) for _ in track_ids] for c in columns},
                         index=pd.Index(track_ids, name="track_id"))
    table.columns = pd.MultiIndex.from_tuples(columns)
    return table.to_csv(), table


@SETTINGS
@given(fma_tables())
def test_fma_tracks_csv_reads_back_what_was_written(tmp_path, case):
    text, table = case
    with through_a_file(tmp_path, text, "tracks.csv") as handle:
        rows = cat.read_fma_tracks(handle, audio_dir="audio")
    assert [r["track_id"] for r in rows] == table.index.tolist()

    def cell(column, i):
        value = table[column].iloc[i] if column in table.columns else None
        return None if pd.isna(value) else value

    for i, row in enumerate(rows):
        assert row["genre"] == cell(("track", "genre_top"), i)  # unknown genres pass through unchanged
        assert row["artist"] == cell(("artist", "name"), i)
        assert row["artist_id"] == cell(("artist", "id"), i)
        fma_split = cell(("set", "split"), i)
        assert row["split"] == (cat.FMA_SPLIT_NAMES[fma_split] if fma_split else
                                cat.split_for(row["track_id"], row["artist_id"]))
        assert row["path"] == cat.fma_audio_path("audio", row["track_id"])


@given(fma_tables(), st.sampled_from([("track", "genre_top")]))
@SETTINGS
def test_fma_tracks_csv_without_genre_is_refused(case, column):
    _, table = case
    with pytest.raises(cat.CatalogueError, match="has no column"):
        cat.read_fma_tracks(io.StringIO(table.drop(columns=[column]).to_csv()), audio_dir="audio")


# ---- the neighbour merge: the top k of merged partial top-k lists is the top k of the whole ----

SIMS = st.sampled_from([1.0, 0.75, 0.5, 0.5, 0.25, 0.0, -0.5])  # few values: ties are common


def reference_top_k(ids: np.ndarray, sims: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    order = sorted(range(len(ids)), key=lambda i: (-sims[i], ids[i]))[:k]
    return [int(ids[i]) for i in order], [float(sims[i]) for i in order]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), SIMS), max_size=40, unique_by=lambda c: c[0]),
       st.integers(1, 12), st.integers(1, 6), st.randoms(use_true_random=False))
def test_merged_partial_top_k_equals_top_k_of_the_whole(candidates, k, n_parts, rnd: random.Random):
    ids = np.array([c[0] for c in candidates], np.int64)
    sims = np.array([c[1] for c in candidates], np.float32)
    owner = [rnd.randrange(n_parts) for _ in candidates]
    partials = [merge_top_k([(ids[[o == p for o in owner]], sims[[o == p for o in owner]])], k)
                for p in range(n_parts)]
    rnd.shuffle(partials)
    merged_ids, merged_sims = merge_top_k(partials, k)
    assert (merged_ids.tolist(), merged_sims.tolist()) == reference_top_k(ids, sims, k)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5), st.integers(1, 8), st.lists(st.integers(1, 6), min_size=1, max_size=4), st.data())
def test_block_merge_equals_top_k_of_each_row(rows, k, widths, data):
    total = sum(widths)
    row_ids = [data.draw(st.lists(st.integers(0, 10**6), min_size=total, max_size=total, unique=True))
               for _ in range(rows)]
    row_sims = [data.draw(st.lists(SIMS, min_size=total, max_size=total)) for _ in range(rows)]
    ids, sims = np.array(row_ids, np.int64), np.array(row_sims, np.float32)
    edges = np.cumsum([0, *widths])
    parts = [(ids[:, a:b], sims[:, a:b]) for a, b in zip(edges[:-1], edges[1:])]
    merged_ids, merged_sims = merge_block_top_k(parts, k)
    for r in range(rows):
        assert (merged_ids[r].tolist(), merged_sims[r].tolist()) == reference_top_k(ids[r], sims[r], k)
