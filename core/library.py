"""What changed in a music folder since its tables were made: the plan of ``wavelist update``. Pure code: no
Beam, no TensorFlow; the callers read the files (identities, tags) through the functions they pass in.

A file is first compared by path, size and modification time with the row the tables hold for that path
(nothing is read when all three agree); only files new to a path, or whose size or time changed, are read for
their audio identity (:mod:`core.identity`). Then:

- **unchanged**: same path, same audio (and, if its tags were read again, the same tags): row kept as it is;
- **retagged**: same path, same audio, other tags: id and vector kept, the row rebuilt from the new tags;
- **moved**: the audio of a track whose path is gone, at a new path (copies of one audio paired in path
  order): id and vector kept, the row rebuilt at the new path;
- **changed**: other audio at a path (a new rip), not the audio of a track moved elsewhere: analysed again;
- **added**: a new path holding audio the tables do not know: analysed;
- **removed**: a track whose path is gone and whose audio is nowhere in the folder.

Tables made before the identity column (``legacy``) hold no identity to recognise a moved file by: their tracks
are matched by path only, every file is read once for its identity, and a file still at its path keeps its id,
vector and row as they are (its identity, size and time filled in; values from FMA's tracks.csv or a labels CSV
are not overwritten by its tags).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from core import catalogue as cat

Row = dict[str, Any]
# the columns a file's tags or the labels CSV fill: what a retag can change in tracks.parquet
TAG_COLUMNS = ("title", "artist", "artist_id", "album", "album_artist", "genre", "track_number", "length_s",
               "musicbrainz_recording_id", "musicbrainz_artist_id", "musicbrainz_album_id")
ANALYSIS_COLUMNS = ("duration_s", "n_tiles", "status")  # what the analysis gave: kept with the vector
COUNTS = ("added", "removed", "moved", "retagged", "changed", "unchanged", "analysed")


class NotTheLibrary(ValueError):
    """The folder shares no file with the tables: neither a path nor any audio."""


@dataclass
class UpdatePlan:
    """What ``wavelist update`` does: ``kept`` rows (new row with its id; ``old_ids`` maps each kept id to the
    id its vector has in the old tables), ``analyse`` rows (with ids) to ingest and embed, the ids ``removed``,
    the remembered rejects ``still_rejected`` (not read again), and the ``counts``."""

    kept: list[Row] = field(default_factory=list)
    old_ids: dict[int, int] = field(default_factory=dict)
    analyse: list[Row] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    still_rejected: list[Row] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    first_update: bool = False  # legacy tables: the identity column filled in for the first time
    touched: int = 0  # unchanged files whose size or time changed (e.g. touched): their new facts are recorded

    @property
    def nothing_changed(self) -> bool:
        """No track added, removed, moved, retagged or changed, nothing to analyse and no column to fill in."""
        return not (self.first_update or self.touched) and all(self.counts[k] == 0 for k in COUNTS if k != "unchanged")


def library_relative(path: str, root: str) -> str | None:
    """``path`` relative to the folder ``root`` ('/'-separated), or None when it lies outside: compared as
    written, then as absolute paths (relative ones taken from the current folder), then with ``root``'s links
    resolved."""
    root = root.rstrip("/")
    if path.startswith(root + "/"):
        return path[len(root) + 1:]
    if "://" in path or "://" in root:
        return None
    absolute = os.path.abspath(path)
    for base in dict.fromkeys((os.path.abspath(root), os.path.realpath(root))):
        if absolute.startswith(base.rstrip("/") + "/"):
            return absolute[len(base.rstrip("/")) + 1:]
    return None


def _same_file(old: Row, row: Row) -> bool:
    return (old.get("audio_identity") is not None and old.get("file_size") is not None
            and old.get("file_size") == row.get("file_size") and old.get("file_mtime_ns") == row.get("file_mtime_ns")
            and old.get("real_path") == row.get("real_path"))  # a link that leads elsewhere now is read again


def rebuilt(row: Row, old: Row, tags: Mapping[str, Any], track_id: int) -> Row:
    """The tracks.parquet row of a kept track: the catalogue ``row`` (path, labels, file facts) completed from
    the file's ``tags`` as ingest completes it, with ``track_id`` and what the analysis gave (from ``old``)."""
    merged = cat.with_tags({**row, "track_id": track_id}, tags)
    merged["split"] = row.get("split") or cat.split_for(track_id)
    merged.update({k: old.get(k) for k in ANALYSIS_COLUMNS})
    merged.pop("source", None)
    return merged


def _carried(old: Row, row: Row) -> Row:
    """An unchanged track's old row, at the path as written now, with the file's facts now."""
    return {**old, "path": row["path"], "audio_identity": row.get("audio_identity") or old.get("audio_identity"),
            "file_size": row.get("file_size"), "file_mtime_ns": row.get("file_mtime_ns"),
            "real_path": row.get("real_path")}


def plan_update(old_rows: Iterable[Row], rows: list[Row], *, root: str,
                identify: Callable[[list[Row]], list[Row]], tags_of: Callable[[Row], Mapping[str, Any]],
                old_rejects: Iterable[Row] = (), reread_tags: bool = False) -> UpdatePlan:
    """The plan that brings tables whose tracks are ``old_rows`` (tracks.parquet rows) in step with the folder
    ``root`` whose audio files are ``rows`` (:func:`core.catalogue.folder_tracks` rows with ``file_size`` and
    ``file_mtime_ns``; ids only where the labels CSV or FMA's layout give one).

    ``identify`` adds ``audio_identity`` to the rows it is given (reading them once), ``tags_of`` reads a file's
    tags (:func:`core.tags.read_tags`); ``old_rejects`` are the files an earlier update could not analyse (with
    their size and time: not read again while unchanged); ``reread_tags``: read every kept file's tags again
    (the labels CSV changed). Raises :class:`NotTheLibrary` when the folder holds no file of the tables.
    """
    old_rows = list(old_rows)
    plan = UpdatePlan(first_update=any(o.get("audio_identity") is None for o in old_rows))
    old_at: dict[str, Row] = {}
    for old in old_rows:
        relative = library_relative(old["path"], root)
        if relative is not None:
            old_at.setdefault(relative, old)
    rejected_at = {library_relative(r["path"], root): r for r in old_rejects}
    current = {row["path"][len(root.rstrip("/")) + 1:]: row for row in rows}

    unchanged, to_read = [], []
    for relative, row in current.items():
        old = old_at.get(relative)
        if old is not None and _same_file(old, row):
            unchanged.append((relative, {**row, "audio_identity": old["audio_identity"]}))
        elif old is None and relative in rejected_at and \
                rejected_at[relative].get("file_size") == row.get("file_size") and \
                rejected_at[relative].get("file_mtime_ns") == row.get("file_mtime_ns"):  # (None: missing then and now)
            plan.still_rejected.append({**rejected_at[relative], "path": row["path"]})
        else:
            to_read.append(row)
    read = {row["path"][len(root.rstrip("/")) + 1:]: row for row in identify(to_read)} if to_read else {}
    if old_rows and not unchanged and not any(r in old_at for r in read):
        known = {o["audio_identity"] for o in old_rows if o.get("audio_identity")}
        if not any(r.get("audio_identity") in known for r in read.values()):
            example = old_rows[0]["path"]
            raise NotTheLibrary(f"{root} holds none of the tables' {len(old_rows)} tracks, by path or by audio "
                                f"(their paths are like {cat.safe_text(example)!r})")

    kept: list[tuple[Row, Row, bool]] = [(old_at[rel], row, False) for rel, row in unchanged]  # (old, row, tags?)
    changed_paths: dict[str, Row] = {}  # relative path -> the old track there
    new: list[Row] = []
    for relative, row in read.items():
        old = old_at.get(relative)
        if old is None:
            new.append(row)
        elif old.get("audio_identity") is None:  # legacy tables: trusted by path, the row kept as it is
            kept.append((old, row, False))
        elif old["audio_identity"] == row.get("audio_identity"):
            kept.append((old, row, True))  # same audio: its tags read again
        else:
            changed_paths[relative] = old
            new.append(row)
    staying = {id(old) for old, _, _ in kept}
    gone: dict[str, list[Row]] = {}
    for old in old_rows:
        if id(old) not in staying and old.get("audio_identity"):
            gone.setdefault(old["audio_identity"], []).append(old)
    arrivals: dict[str, list[Row]] = {}
    for row in new:
        if row.get("audio_identity"):
            arrivals.setdefault(row["audio_identity"], []).append(row)
    moved_away: set[int] = set()
    for identity, rows_here in arrivals.items():
        for old, row in zip(sorted(gone.get(identity, []), key=lambda o: o["path"]),
                            sorted(rows_here, key=lambda r: r["path"])):
            kept.append((old, row, True))
            moved_away.add(id(old))
            plan.counts["moved"] += 1
            new.remove(row)
    staying = {id(old) for old, _, _ in kept}

    for old, row, read_tags in kept:
        track_id = row["track_id"] if row.get("track_id") is not None else old["track_id"]
        if read_tags or reread_tags:
            fresh = rebuilt(row, old, tags_of(row), track_id)
            if id(old) not in moved_away:
                differs = any(fresh.get(c) != old.get(c) for c in TAG_COLUMNS)
                plan.counts["retagged" if differs else "unchanged"] += 1
                plan.touched += not differs and not _same_file(old, row)
        else:
            fresh = _carried(old, row)
            fresh["track_id"] = track_id
            plan.counts["unchanged"] += 1
        plan.kept.append(fresh)
        plan.old_ids[track_id] = old["track_id"]
    for row in new:  # a path whose old audio moved elsewhere holds an added track, not a changed one
        old = changed_paths.get(row["path"][len(root.rstrip("/")) + 1:])
        plan.counts["changed" if old is not None and id(old) not in moved_away else "added"] += 1
    plan.analyse = cat.assign_ids([{**row} for row in new], taken={r["track_id"] for r in plan.kept})
    plan.counts["analysed"] = len(plan.analyse)
    plan.removed = sorted(o["track_id"] for o in old_rows if id(o) not in staying)
    plan.counts["removed"] = len(plan.removed) - plan.counts["changed"]
    return plan
