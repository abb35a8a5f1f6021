"""Playlists as a text table, JSON (one object per track, in order) or an M3U8 file for players."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from playlists.kinds import KINDS
from playlists.radio import Entry
from playlists.tables import Tables
from playlists.text import for_json, for_terminal, one_line

FORMATS = ("table", "json", "m3u")


# What each kind's number is: cosine similarity to the seed, to the previous track, to the seeds' blend, ...
SCORE_NAMES = {kind.name: kind.score for kind in KINDS}


def playlist_rows(tables: Tables, entries: list[Entry], score: str = "similarity") -> list[dict[str, Any]]:
    """One object per entry: track_id, genre, artist, title, album, duration_s (the file's length where its
    tags gave it), path (as a player opens it), and the entry's similarity under the name ``score``."""
    rows = tables.rows_of(np.array([e.track_id for e in entries], dtype=np.int64))
    names = ("genre", "artist", "title", "album", "path", "length_s", "duration_s")
    genre, artist, title, album, path, length, analysed = (tables.column(name) for name in names)
    return [{
        "track_id": entry.track_id,
        "genre": genre[row],
        "artist": artist[row],
        "title": title[row],
        "album": album[row],
        "duration_s": _seconds(length[row], analysed[row]),
        "path": player_path(path[row]),
        score: round(entry.similarity, 4),
    } for entry, row in zip(entries, rows.tolist())]


def _seconds(*values: Any) -> float | None:
    """The first known (finite) of ``values``, rounded to 0.1 s; None if none is."""
    known = [float(v) for v in values if v is not None and np.isfinite(v)]
    return round(known[0], 1) if known else None


@lru_cache(maxsize=65_536)
def player_path(path: str | None) -> str:
    """``path`` as a player opens it: a local path made absolute (relative ones are taken from the current
    folder, where ingest ran), a URL (``gs://``, ``http://``) unchanged. Cached: a server answers the same
    tracks again and again."""
    if not path:
        return ""
    if "://" in path:
        return path
    try:
        return str(Path(path).expanduser().resolve())
    except RuntimeError:  # ~name of no user on this machine: a name like any other
        return str(Path(path).resolve())


def m3u(rows: list[dict[str, Any]], relative_to: str | Path | None = None) -> str:
    """An M3U8 playlist (UTF-8) of ``rows``' audio paths with an ``#EXTINF:seconds,artist - title`` line each;
    paths absolute, or relative to the folder ``relative_to`` (where the playlist will lie).

    Each entry is exactly two lines whatever the tags hold: control characters in titles and paths become
    spaces, so no title can add a line (a playlist entry the user never chose).
    """
    lines = ["#EXTM3U"]
    for row in rows:
        seconds = round(row["duration_s"]) if row.get("duration_s") is not None else -1
        lines += [one_line(f"#EXTINF:{seconds},{row['artist'] or 'unknown'} - {row['title'] or row['track_id']}"),
                  one_line(relative_path(player_path(row["path"]), relative_to))]
    return "\n".join(lines)


def relative_path(path: str, folder: str | Path | None) -> str:
    """``path`` relative to ``folder`` (with ``/``), or unchanged without a folder or for a URL."""
    if folder is None or not path or "://" in path:
        return path
    return os.path.relpath(path, Path(folder).expanduser().resolve()).replace(os.sep, "/")


def missing_audio(rows: list[dict[str, Any]]) -> list[str]:
    """The local audio paths of ``rows`` that do not exist here (a player would skip them)."""
    paths = [player_path(row["path"]) for row in rows]
    return [p for p in paths if p and "://" not in p and not Path(p).exists()]


def render(tables: Tables, entries: list[Entry], fmt: str, score: str = "similarity",
           relative_to: str | Path | None = None) -> str:
    """The playlist in ``fmt`` (one of :data:`FORMATS`); ``score`` names the similarity column (see
    :data:`SCORE_NAMES`), ``relative_to`` the folder M3U8 paths are relative to."""
    rows = playlist_rows(tables, entries, score)
    if fmt == "json":
        return for_json(json.dumps(rows, indent=2, ensure_ascii=False))
    if fmt == "m3u":
        return m3u(rows, relative_to)
    if fmt == "table":
        width = max(len(score), 6)
        header = f"{'#':>3}  {'track_id':>8}  {score:>{width}}  {'genre':<14} {'artist':<20} title"
        body = [  # tags are shown without escape sequences or control characters
            f"{i:>3}  {r['track_id']:>8}  {r[score]:>{width}.4f}  {for_terminal(r['genre'] or ''):<14} "
            f"{for_terminal(r['artist'] or ''):<20} {for_terminal(r['title'] or '')}"
            for i, r in enumerate(rows, start=1)
        ]
        return "\n".join([header, *body])
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def read_track_list(tables: Tables, path: str | Path) -> list[int]:
    """Track ids listed in the file ``path``, in order (:func:`playlists.track_list.track_ids`): an M3U/M3U8
    playlist, this module's JSON output, or track ids or audio paths one a line; any encoding
    :data:`storage.text_files.ENCODING_RULE` reads. A line that names no track of ``tables`` is an
    :class:`~playlists.tables.UnknownTrack` error naming the file and line."""
    from playlists.track_list import track_ids
    from storage import text_files

    with text_files.open_text(path) as handle:
        return track_ids(text_files.UserText(handle, str(path)), track_namer(tables)).tolist()


def parse_track_list(tables: Tables, text: str, source: str = "the list") -> list[int]:
    """Track ids in ``text``, in order, read as :func:`read_track_list` reads a file (named ``source``)."""
    from playlists.track_list import track_ids
    from storage.text_files import UserText

    return track_ids(UserText.of(text, source), track_namer(tables)).tolist()


def track_namer(tables: Tables) -> Callable[[str], int]:
    """What a track list's line names on this machine: a track id, or an audio path of ``tables`` (a relative one
    taken from the current folder); anything else raises :class:`~playlists.tables.UnknownTrack`."""
    from playlists.tables import UnknownTrack, parse_id

    by_path: dict[str, int] = {}

    def name_of(line: str) -> int:
        track_id = parse_id(line)
        if track_id is not None:
            return int(tables.ids[tables.row(track_id)])
        if not by_path:
            by_path.update((player_path(p), int(i)) for i, p in zip(tables.ids.tolist(), tables.column("path")) if p)
        try:  # a path longer than any file system takes (4,096 bytes) is no path of the tables
            found = by_path.get(player_path(line)) if len(line) <= 4096 else None
        except (ValueError, OSError):  # a NUL byte, a name too long
            found = None
        if found is None:
            shown = line if len(line) <= 200 else line[:200] + "..."
            raise UnknownTrack(f"{shown!r} is neither a track id nor an audio path of {tables.folder}")
        return found

    return name_of
