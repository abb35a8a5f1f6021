"""``wavelist update`` on a small tagged folder: each kind of change alone (one after the other) and all together,
each result compared with a fresh ingest + embed of the folder as it is then; ``wavelist duplicates`` on copies
the test makes. The change kinds share pipeline runs: the suite must stay fast."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile

from beam_jobs import embed, ingest, update
from core import catalogue as cat
from tests.conftest import IN_MEMORY, tag
from wavelist.cli import main

ORIGINALS = {  # library path -> (the session catalogue's title, artist tag, album tag)
    "Techno Artist 0/Album/01.mp3": ("Techno piece 0.0", "Techno Artist 0", "Album"),
    "Techno Artist 0/Album/02.mp3": ("Techno piece 0.1", "Techno Artist 0", "Album"),
    "Techno Artist 1/Album/01.mp3": ("Techno piece 1.0", "Techno Artist 1", "Album"),
    "Techno Artist 1/Album/02.mp3": ("Techno piece 1.1", "Techno Artist 1", "Album"),
    "Techno Artist 2/Album/01.mp3": ("Techno piece 2.0", "Techno Artist 2", "Album"),
    "Techno Artist 2/Album/02.mp3": ("Techno piece 2.1", "Techno Artist 2", "Album"),
    "Other Band/Live/01.mp3": ("Drone piece 0.0", "Other Band", "Live"),
    "Other Band/Live/02.mp3": ("Drone piece 0.1", "Other Band", "Live"),
}
MOVED = ("Techno Artist 0/Album/02.mp3", "Elsewhere/renamed.mp3")
RETAGGED = "Techno Artist 1/Album/02.mp3"
REMOVED = "Other Band/Live/02.mp3"
CHANGED = ("Techno Artist 2/Album/02.mp3", "Ambient piece 0.0")  # a new rip: other audio at the same path
ADDED = ("New/fresh.mp3", "Chiptune piece 0.0")


def catalogue_files(catalogue: Path) -> dict[str, Path]:
    rows = cat.read_fma_tracks((catalogue / "fma_metadata" / "tracks.csv").open(), audio_dir=str(catalogue / "fma_small"))
    return {r["title"]: Path(r["path"]) for r in rows}


def make_library(folder: Path, by_title: dict[str, Path]) -> Path:
    """The tagged folder: 8 songs (three artists with an ``01.mp3`` each) and 4 copies of three of them."""
    for path, (title, artist, album) in ORIGINALS.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(by_title[title], folder / path)
        tag(folder / path, title=title, artist=artist, album=album)
    copies = folder / "Copies"
    copies.mkdir()
    a, rate = soundfile.read(folder / "Techno Artist 0/Album/01.mp3")
    soundfile.write(copies / "re-encoded.flac", a, rate)  # another format
    soundfile.write(copies / "low bit rate.mp3", a, rate, format="MP3", compression_level=0.99)  # another bit rate
    b, rate = soundfile.read(folder / "Techno Artist 1/Album/01.mp3")
    silence = np.zeros((rate,) + b.shape[1:])
    soundfile.write(copies / "padded.wav", np.concatenate([silence, b, silence]), rate)  # silence added
    shutil.copy(folder / "Techno Artist 2/Album/01.mp3", copies / "retagged copy.mp3")
    tag(copies / "retagged copy.mp3", title="A copy", album="Best Of")
    return folder


def apply(folder: Path, changes: list[str], by_title: dict[str, Path]) -> None:
    if "move" in changes:
        (folder / MOVED[1]).parent.mkdir(parents=True, exist_ok=True)
        (folder / MOVED[0]).rename(folder / MOVED[1])
    if "retag" in changes:
        tag(folder / RETAGGED, title="Techno piece 1.1 (remastered tag)")
    if "remove" in changes:
        (folder / REMOVED).unlink()
    if "change" in changes:
        shutil.copy(by_title[CHANGED[1]], folder / CHANGED[0])
        tag(folder / CHANGED[0], title="Techno piece 2.1", artist="Techno Artist 2", album="Album")
    if "add" in changes:
        (folder / ADDED[0]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(by_title[ADDED[1]], folder / ADDED[0])


def fresh(folder: Path, out: Path, model: str) -> Path:
    ingest.run(["--audio-dir", str(folder), "--out", str(out / "data"), *IN_MEMORY])
    embed.run(["--data", str(out / "data"), "--model", model, "--out", str(out / "tables"), "--k", "5", *IN_MEMORY])
    return out / "tables"


def run_update(folder: Path, tables: Path, out: Path, model: str, *flags: str) -> dict:
    return update.run(["--audio-dir", str(folder), "--tables", str(tables), "--model", model, "--out", str(out),
                       *flags, *IN_MEMORY])


STEPS = [["move", "retag", "remove"], ["change", "add"]]  # the kinds that need no analysis, then the two that do


@pytest.fixture(scope="module")
def runs(pipeline_outputs, tmp_path_factory):
    """The first tables of the folder; two updates one after the other (the changes that need no analysis, then
    the two that do, in place); an update of the first tables with every change at once; and a fresh ingest +
    embed of the folder as it is at the end. The folder stays where it is, as a listener's does."""
    root = tmp_path_factory.mktemp("update")
    model = str(pipeline_outputs["model"])
    by_title = catalogue_files(pipeline_outputs["catalogue"])
    library = make_library(root / "library", by_title)
    first = fresh(library, root / "first", model)
    before = {p: r for p, r in read(first)[0].items()}
    apply(library, STEPS[0], by_title)
    steps = [run_update(library, first, root / "step-1", model)]
    apply(library, STEPS[1], by_title)
    last = shutil.copytree(root / "step-1", root / "step-2")
    steps.append(run_update(library, last, last, model))  # --out TABLES: replaced in place
    at_once = run_update(library, first, root / "at-once", model)
    return {"root": root, "model": model, "library": library, "first": (first, before),
            "steps": [(root / "step-1", steps[0]), (last, steps[1])], "at_once": (root / "at-once", at_once),
            "fresh": fresh(library, root / "fresh", model)}


def read(tables: Path) -> tuple[dict[str, dict], dict[str, list[tuple[str, float]]], dict[str, np.ndarray]]:
    """Rows by path, neighbour lists by path, vectors before the diffusion by path."""
    rows = {r["path"]: r for r in pq.read_table(tables / "tracks.parquet").to_pylist()}
    path = {r["track_id"]: p for p, r in rows.items()}
    neighbours = pq.read_table(tables / "neighbours.parquet").sort_by([("track_id", "ascending"), ("rank", "ascending")])
    lists: dict[str, list] = {}
    for r in neighbours.to_pylist():
        lists.setdefault(path[r["track_id"]], []).append((path[r["neighbour_id"]], r["similarity"]))
    vectors = {path[r["track_id"]]: np.asarray(r["embedding"]) for r in pq.read_table(tables / "undiffused.parquet").to_pylist()}
    return rows, lists, vectors


def relative(rows: dict, folder: Path) -> dict:
    return {p[len(str(folder)) + 1:]: r for p, r in rows.items()}


def assert_same_as_fresh(updated: Path, folder_of_update: Path, fresh_tables: Path, fresh_folder: Path) -> None:
    """Same tracks (ids, tags, file facts) and, by path, the same neighbour lists as a fresh ingest + embed
    (a swap of two equally near neighbours allowed)."""
    rows, lists, vectors = read(updated)
    want_rows, want_lists, want_vectors = read(fresh_tables)
    rows, want_rows = relative(rows, folder_of_update), relative(want_rows, fresh_folder)
    assert sorted(rows) == sorted(want_rows)
    for path, want in want_rows.items():
        differing = {k for k in want if k != "path" and rows[path][k] != want[k]}
        assert not differing, (path, differing)
    lists, want_lists = relative(lists, folder_of_update), relative(want_lists, fresh_folder)
    unit = {p[len(str(fresh_folder)) + 1:]: v / np.linalg.norm(v) for p, v in want_vectors.items()}
    for path, want in want_lists.items():
        got = [(n[len(str(folder_of_update)) + 1:], s) for n, s in lists[path]]
        want = [(n[len(str(fresh_folder)) + 1:], s) for n, s in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
        assert all(g == w or abs(sg - sw) < 1e-5 for (g, sg), (w, sw) in zip(got, want)), path
    for path, vector in relative(vectors, folder_of_update).items():
        np.testing.assert_allclose(vector / np.linalg.norm(vector), unit[path], atol=1e-5)


COUNTED = ("added", "removed", "moved", "retagged", "changed", "unchanged", "analysed")


def test_all_changes_at_once_give_what_a_fresh_ingest_and_embed_gives(runs):
    out, summary = runs["at_once"]
    assert {k: summary["update"][k] for k in COUNTED} == \
        {"added": 1, "removed": 1, "moved": 1, "retagged": 1, "changed": 1, "unchanged": 8, "analysed": 2}
    assert_same_as_fresh(out, runs["library"], runs["fresh"], runs["library"])
    assert json.loads((out / "summary.json").read_text())["update"]["moved"] == 1
    assert pq.read_table(out / "map3d.parquet").num_rows == 12


def test_the_updates_that_led_to_the_folder_give_a_fresh_runs_tables(runs):
    (_, first), (_, second) = runs["steps"]
    assert {k: first["update"][k] for k in COUNTED} == \
        {"added": 0, "removed": 1, "moved": 1, "retagged": 1, "changed": 0, "unchanged": 9, "analysed": 0}
    assert {k: second["update"][k] for k in COUNTED} == \
        {"added": 1, "removed": 0, "moved": 0, "retagged": 0, "changed": 1, "unchanged": 10, "analysed": 2}
    assert_same_as_fresh(runs["steps"][1][0], runs["library"], runs["fresh"], runs["library"])
    assert not list(runs["root"].glob(".step-2.*"))  # the in-place swap left nothing beside the tables


def test_moves_renames_and_retags_keep_ids_and_vectors(runs, tmp_path, capsys):
    library = runs["library"]
    first = relative(runs["first"][1], library)
    first_vectors = relative(read(runs["first"][0])[2], library)
    moved, _, moved_vectors = read(runs["steps"][0][0])
    moved, moved_vectors = relative(moved, library), relative(moved_vectors, library)
    old_id = first[MOVED[0]]["track_id"]
    assert MOVED[0] not in moved and moved[MOVED[1]]["track_id"] == old_id
    assert moved[MOVED[1]]["title"] == first[MOVED[0]]["title"]  # its tags travel with it
    np.testing.assert_array_equal(moved_vectors[MOVED[1]], first_vectors[MOVED[0]])
    assert moved[RETAGGED]["track_id"] == first[RETAGGED]["track_id"]
    assert moved[RETAGGED]["title"] == "Techno piece 1.1 (remastered tag)"
    np.testing.assert_array_equal(moved_vectors[RETAGGED], first_vectors[RETAGGED])
    changed = relative(read(runs["steps"][1][0])[0], library)[CHANGED[0]]
    assert changed["track_id"] != first[CHANGED[0]]["track_id"]  # new audio, new id (docs/update.md)
    # a listening history that names the moved track by id still finds it, at its new path
    history = tmp_path / "history.txt"
    history.write_text(f"{old_id}\n{first['Techno Artist 1/Album/01.mp3']['track_id']}\n")
    assert main(["profile", "--tables", str(runs["steps"][1][0]), "--history", str(history), "-n", "3"]) == 0
    assert main(["radio", "--tables", str(runs["steps"][1][0]), "--seed", str(old_id), "-n", "2"]) == 0
    capsys.readouterr()


def test_removed_tracks_leave_every_table(runs):
    gone = relative(runs["first"][1], runs["library"])[REMOVED]["track_id"]
    for out in (runs["steps"][0][0], runs["at_once"][0]):
        for table, columns in (("tracks", ["track_id"]), ("embeddings", ["track_id"]), ("undiffused", ["track_id"]),
                               ("map3d", ["track_id"]), ("neighbours", ["track_id", "neighbour_id"])):
            found = pq.read_table(out / f"{table}.parquet", columns=columns)
            assert all(gone not in found[c].to_pylist() for c in columns), table


def test_digit_names_in_two_albums_are_two_tracks(runs):
    rows = relative(runs["first"][1], runs["library"])
    ids = [rows[f"Techno Artist {a}/Album/01.mp3"]["track_id"] for a in range(3)]
    assert len(set(ids)) == 3 and 1 not in ids
    assert rows["Copies/retagged copy.mp3"]["track_id"] != rows["Techno Artist 2/Album/01.mp3"]["track_id"]
    assert rows["Copies/retagged copy.mp3"]["audio_identity"] == rows["Techno Artist 2/Album/01.mp3"]["audio_identity"]


def test_nothing_changed_is_quick_and_writes_nothing(runs, capsys):
    out = runs["root"] / "not-written"
    start = time.monotonic()
    summary = run_update(runs["library"], runs["steps"][1][0], out, runs["model"])
    assert summary == {"update": {**dict.fromkeys(COUNTED, 0), "unchanged": 12, "nothing_changed": True}}
    assert time.monotonic() - start < 10 and not out.exists()
    assert "nothing changed" in capsys.readouterr().out


def test_an_emptied_library_and_a_foreign_folder_are_refused(runs, tmp_path, capsys):
    tables = runs["steps"][1][0]
    before = {p: p.stat().st_mtime_ns for p in tables.rglob("*")}
    empty = tmp_path / "empty"
    (empty / "cover art").mkdir(parents=True)
    (empty / "cover art" / "front.jpg").write_bytes(b"not audio")
    other = tmp_path / "other"
    other.mkdir()
    soundfile.write(other / "x.wav", np.random.default_rng(0).standard_normal(22050 * 4) * 0.1, 22050)
    for folder, message in ((empty, "emptied library"), (other, "not the folder")):
        code = main(["update", "--audio-dir", str(folder), "--tables", str(tables), "--model", runs["model"],
                     "--out", str(tables), *IN_MEMORY])
        assert code == 2 and message in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in tables.rglob("*")} == before
    code = main(["update", "--audio-dir", str(runs["library"]), "--tables", str(runs["first"][0]), "--model",
                 runs["model"], "--out", str(runs["at_once"][0]), *IN_MEMORY])  # an earlier output: --overwrite
    assert code == 2 and "--overwrite" in capsys.readouterr().err


def test_tables_from_before_the_identity_keep_their_ids_at_their_first_update(runs, tmp_path):
    old = shutil.copytree(runs["steps"][1][0], tmp_path / "old")
    shard = next((old / "tracks.parquet").glob("*.parquet"))
    rows = pq.read_table(shard)
    pq.write_table(rows.drop(["audio_identity", "file_size", "file_mtime_ns"]), shard)
    summary = run_update(runs["library"], old, tmp_path / "new", runs["model"], "--new-map")
    assert summary["update"]["first_update"] and summary["update"]["unchanged"] == 12
    assert summary["update"]["map"] == "laid out anew" and pq.read_table(tmp_path / "new" / "map3d.parquet").num_rows == 12
    got = {r["path"]: r for r in pq.read_table(tmp_path / "new" / "tracks.parquet").to_pylist()}
    assert {p: r["track_id"] for p, r in got.items()} == dict(zip(rows["path"].to_pylist(), rows["track_id"].to_pylist()))
    assert all(r["audio_identity"] and r["file_size"] for r in got.values())


def test_duplicates_finds_the_copies_and_nothing_else(runs, capsys):
    assert main(["duplicates", "--tables", str(runs["first"][0]), "--format", "json"]) == 0
    groups = json.loads(capsys.readouterr().out)
    found = sorted(sorted(t["path"][len(str(runs["library"])) + 1:] for t in g["tracks"]) for g in groups)
    assert found == [["Copies/low bit rate.mp3", "Copies/re-encoded.flac", "Techno Artist 0/Album/01.mp3"],
                     ["Copies/padded.wav", "Techno Artist 1/Album/01.mp3"],
                     ["Copies/retagged copy.mp3", "Techno Artist 2/Album/01.mp3"]]
    assert {g["how"] for g in groups} == {"same sound", "same audio"}
    assert main(["duplicates", "--tables", str(runs["first"][0])]) == 0
    assert capsys.readouterr().out.startswith("3 groups of tracks that are one recording")
