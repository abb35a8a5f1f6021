"""The plan of ``wavelist update`` (core.library): each kind of change, found with as few reads as possible."""
from __future__ import annotations

import pytest

from core import catalogue as cat
from core.identity import identity_track_id
from core.library import NotTheLibrary, library_relative, plan_update

pytestmark = pytest.mark.unit
ROOT = "/music"


class Folder:
    """A fake folder: path -> (audio identity, size, mtime, tags); counts what was read."""

    def __init__(self, files: dict[str, tuple[str, int, int, dict]]):
        self.files = files
        self.identified: list[str] = []
        self.tagged: list[str] = []

    def rows(self) -> list[dict]:
        rows, _ = cat.folder_tracks([f"{ROOT}/{p}" for p in self.files], root=ROOT)
        return [{**r, "file_size": self.files[r["path"][len(ROOT) + 1:]][1],
                 "file_mtime_ns": self.files[r["path"][len(ROOT) + 1:]][2]} for r in rows]

    def identify(self, rows):
        self.identified += [r["path"] for r in rows]
        return [{**r, "audio_identity": self.files[r["path"][len(ROOT) + 1:]][0]} for r in rows]

    def tags_of(self, row):
        self.tagged.append(row["path"])
        return self.files[row["path"][len(ROOT) + 1:]][3]

    def plan(self, old_rows, **kwargs):
        return plan_update(old_rows, self.rows(), root=ROOT, identify=self.identify, tags_of=self.tags_of, **kwargs)


def tables_of(folder: Folder) -> list[dict]:
    """tracks.parquet rows of a fresh ingest of ``folder``."""
    rows = cat.assign_ids(folder.identify(folder.rows()))
    folder.identified.clear()
    return [{**cat.with_tags(r, folder.files[r["path"][len(ROOT) + 1:]][3]), "duration_s": 3.0, "n_tiles": 1,
             "status": "ok"} for r in rows]


LIBRARY = {"a/1.mp3": ("mp3-frames:1", 100, 1, {"title": "One", "artist": "A"}),
           "a/2.mp3": ("mp3-frames:2", 200, 1, {"title": "Two", "artist": "A"}),
           "b/3.flac": ("pcm-md5:3", 300, 1, {"title": "Three", "artist": "B"}),
           "b/4.flac": ("pcm-md5:4", 400, 1, {"title": "Four", "artist": "B"})}


def test_nothing_changed_reads_no_file():
    folder = Folder(dict(LIBRARY))
    plan = folder.plan(tables_of(folder))
    assert plan.nothing_changed and plan.counts["unchanged"] == 4
    assert folder.identified == [] and folder.tagged == []


def test_each_kind_of_change():
    folder = Folder(dict(LIBRARY))
    old = tables_of(folder)
    by_path = {r["path"][len(ROOT) + 1:]: r["track_id"] for r in old}
    files = dict(LIBRARY)
    files["c/moved one.mp3"] = files.pop("a/1.mp3")  # moved and renamed
    files["a/2.mp3"] = ("mp3-frames:2", 210, 2, {"title": "Two (remaster tag)", "artist": "A"})  # retagged
    files["b/3.flac"] = ("pcm-md5:33", 333, 2, {"title": "Three", "artist": "B"})  # a new rip
    del files["b/4.flac"]  # removed
    files["d/5.ogg"] = ("ogg-packets:5", 500, 1, {"title": "Five"})  # added
    folder = Folder(files)
    plan = folder.plan(old)
    assert plan.counts == {"added": 1, "removed": 1, "moved": 1, "retagged": 1, "changed": 1, "unchanged": 0,
                           "analysed": 2}
    kept = {r["path"][len(ROOT) + 1:]: r for r in plan.kept}
    assert kept["c/moved one.mp3"]["track_id"] == by_path["a/1.mp3"] and kept["c/moved one.mp3"]["title"] == "One"
    assert kept["a/2.mp3"]["track_id"] == by_path["a/2.mp3"] and kept["a/2.mp3"]["title"] == "Two (remaster tag)"
    assert kept["a/2.mp3"]["file_size"] == 210 and kept["a/2.mp3"]["duration_s"] == 3.0
    assert plan.old_ids == {by_path["a/1.mp3"]: by_path["a/1.mp3"], by_path["a/2.mp3"]: by_path["a/2.mp3"]}
    analysed = {r["path"][len(ROOT) + 1:]: r["track_id"] for r in plan.analyse}
    assert analysed == {"b/3.flac": identity_track_id("pcm-md5:33"), "d/5.ogg": identity_track_id("ogg-packets:5")}
    assert sorted(plan.removed) == sorted([by_path["b/3.flac"], by_path["b/4.flac"]])
    # the same ids as a fresh ingest of the folder as it is now
    assert {r["path"]: r["track_id"] for r in tables_of(Folder(files))} == \
        {r["path"]: r["track_id"] for r in plan.kept + plan.analyse}
    assert sorted(folder.identified) == sorted(f"{ROOT}/{p}" for p in ("a/2.mp3", "b/3.flac", "c/moved one.mp3",
                                                                         "d/5.ogg"))


def test_a_touched_file_is_read_and_stays_unchanged():
    files = dict(LIBRARY)
    old = tables_of(Folder(files))
    files["a/1.mp3"] = files["a/1.mp3"][:2] + (99,) + files["a/1.mp3"][3:]  # touched: only its time changed
    plan = Folder(files).plan(old)
    assert plan.counts["unchanged"] == 4 and plan.touched == 1  # its new time is recorded: not read next time
    assert not plan.nothing_changed
    assert {r["path"]: r["file_mtime_ns"] for r in plan.kept}[f"{ROOT}/a/1.mp3"] == 99


def test_a_path_whose_audio_moved_away_holds_an_added_track():
    files = dict(LIBRARY)
    old = tables_of(Folder(files))
    files["z/1.mp3"] = files["a/1.mp3"]
    files["a/1.mp3"] = ("mp3-frames:new", 111, 5, {"title": "New"})
    plan = Folder(files).plan(old)
    assert (plan.counts["moved"], plan.counts["added"], plan.counts["changed"], plan.counts["removed"]) == (1, 1, 0, 0)


def test_copies_of_one_audio_are_distinct_tracks_and_keep_their_ids():
    files = dict(LIBRARY)
    files["copy/1.mp3"] = files["a/1.mp3"][:1] + (101, 1, {"title": "One (copy)"})
    old = tables_of(Folder(files))
    ids = {r["path"]: r["track_id"] for r in old}
    assert ids[f"{ROOT}/a/1.mp3"] != ids[f"{ROOT}/copy/1.mp3"]
    files["0 first/1.mp3"] = files["a/1.mp3"]  # a third copy that sorts first takes the next free number
    plan = Folder(files).plan(old)
    new = {r["path"]: r["track_id"] for r in plan.analyse}
    assert new == {f"{ROOT}/0 first/1.mp3": identity_track_id("mp3-frames:1", 2)}
    assert plan.counts["added"] == 1 and plan.counts["unchanged"] == 5


def test_tables_without_the_identity_keep_their_ids_by_path():
    folder = Folder(dict(LIBRARY))
    old = [{**r, "audio_identity": None, "file_size": None, "file_mtime_ns": None, "track_id": 10 + i}
           for i, r in enumerate(tables_of(folder))]
    plan = folder.plan(old)
    assert plan.first_update and not plan.nothing_changed
    assert {r["path"]: r["track_id"] for r in plan.kept} == {r["path"]: r["track_id"] for r in old}
    assert all(r["audio_identity"] for r in plan.kept) and plan.counts["unchanged"] == 4


def test_a_folder_of_other_music_is_refused():
    old = tables_of(Folder(dict(LIBRARY)))
    other = Folder({"x/y.mp3": ("mp3-frames:other", 1, 1, {})})
    with pytest.raises(NotTheLibrary, match="holds none of the tables' 4 tracks"):
        other.plan(old)
    moved_library = Folder(dict(LIBRARY))  # the same audio under another root is the same library, moved
    plan = plan_update([{**r, "path": "/old disk" + r["path"]} for r in old], moved_library.rows(), root=ROOT,
                       identify=moved_library.identify, tags_of=moved_library.tags_of)
    assert plan.counts["moved"] == 4 and plan.counts["removed"] == 0


def test_remembered_rejects_are_not_read_again():
    files = {**LIBRARY, "bad/x.mp3": ("mp3-frames:bad", 7, 7, {})}
    old = tables_of(Folder(dict(LIBRARY)))
    folder = Folder(files)
    bad = {"track_id": 1, "path": f"{ROOT}/bad/x.mp3", "stage": "decode", "reason": "broken", "file_size": 7,
           "file_mtime_ns": 7}
    plan = folder.plan(old, old_rejects=[bad])
    assert plan.nothing_changed and folder.identified == [] and len(plan.still_rejected) == 1
    # a labels CSV row that names a file missing then and now (no size, no time) is not analysed again either
    missing = {**folder.rows()[0], "path": f"{ROOT}/gone.mp3", "file_size": None, "file_mtime_ns": None}
    plan = plan_update(old, folder.rows() + [missing], root=ROOT, identify=folder.identify, tags_of=folder.tags_of,
                       old_rejects=[bad, {"track_id": 2, "path": f"{ROOT}/gone.mp3", "stage": "read",
                                          "reason": "missing", "file_size": None, "file_mtime_ns": None}])
    assert plan.nothing_changed and folder.identified == []


def test_library_relative_paths():
    assert library_relative("/music/a/b.mp3", "/music/") == "a/b.mp3"
    assert library_relative("/musical/b.mp3", "/music") is None
    assert library_relative("gs://b/m/x.mp3", "gs://b/m") == "x.mp3"
