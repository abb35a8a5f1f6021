"""Playlists as a text table, JSON (one object per track, in order) or an M3U8 file for players."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from playlists.radio import Entry
from playlists.tables import Tables
from playlists.text import for_terminal, one_line
from schemas.errors import UserError

FORMATS = ("table", "json", "m3u")


def playlist_rows(tables: Tables, entries: list[Entry]) -> list[dict[str, Any]]:
    """One object per entry: track_id, genre, artist, title, path (as a player opens it), similarity."""
    rows = tables.rows_of(np.array([e.track_id for e in entries], dtype=np.int64))
    genre, artist, title, path = (tables.column(name) for name in ("genre", "artist", "title", "path"))
    return [{
        "track_id": entry.track_id,
        "genre": genre[row],
        "artist": artist[row],
        "title": title[row],
        "path": player_path(path[row]),
        "similarity": round(entry.similarity, 4),
    } for entry, row in zip(entries, rows.tolist())]


@lru_cache(maxsize=65_536)
def player_path(path: str | None) -> str:
    """``path`` as a player opens it: a local path made absolute (relative ones are taken from the current
    folder, where ingest ran), a URL (``gs://``, ``http://``) unchanged. Cached: a server answers the same
    tracks again and again."""
    if not path:
        return ""
    if "://" in path:
        return path
    return str(Path(path).expanduser().resolve())


def m3u(rows: list[dict[str, Any]]) -> str:
    """An M3U8 playlist (UTF-8) of ``rows``' audio paths, absolute, with an ``#EXTINF`` title line each.

    Each entry is exactly two lines whatever the tags hold: control characters in titles and paths become
    spaces, so no title can add a line (a playlist entry the user never chose).
    """
    lines = ["#EXTM3U"]
    for row in rows:
        lines += [one_line(f"#EXTINF:-1,{row['artist'] or 'unknown'} - {row['title'] or row['track_id']}"),
                  one_line(player_path(row["path"]))]
    return "\n".join(lines)


def missing_audio(rows: list[dict[str, Any]]) -> list[str]:
    """The local audio paths of ``rows`` that do not exist here (a player would skip them)."""
    paths = [player_path(row["path"]) for row in rows]
    return [p for p in paths if p and "://" not in p and not Path(p).exists()]


def render(tables: Tables, entries: list[Entry], fmt: str) -> str:
    """The playlist in ``fmt`` (one of :data:`FORMATS`)."""
    rows = playlist_rows(tables, entries)
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if fmt == "m3u":
        return m3u(rows)
    if fmt == "table":
        header = f"{'#':>3}  {'track_id':>8}  {'similarity':>10}  {'genre':<14} {'artist':<20} title"
        body = [  # tags are shown without escape sequences or control characters
            f"{i:>3}  {r['track_id']:>8}  {r['similarity']:>10.3f}  {for_terminal(r['genre'] or ''):<14} "
            f"{for_terminal(r['artist'] or ''):<20} {for_terminal(r['title'] or '')}"
            for i, r in enumerate(rows, start=1)
        ]
        return "\n".join([header, *body])
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def read_track_list(tables: Tables, path: str | Path) -> list[int]:
    """Track ids listed in ``path``, in order: an M3U/M3U8 playlist (audio paths), this module's JSON output
    (objects with ``track_id``), or a text file of track ids or audio paths, one a line (``#`` lines skipped).
    A line that names no track of ``tables`` is an :class:`~playlists.tables.UnknownTrack` error."""
    return parse_track_list(tables, Path(path).read_text(encoding="utf-8"), source=str(path))


def parse_track_list(tables: Tables, text: str, source: str = "the list") -> list[int]:
    """Track ids in ``text``, in order, read as :func:`read_track_list` reads a file (named ``source``)."""
    from playlists.tables import UnknownTrack

    path = source
    if text.lstrip().startswith("["):
        try:
            return [tables.resolve(row["track_id"]) for row in json.loads(text)]
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise UserError(f"{path} is not a JSON list of objects with a track_id ({error})") from None
    by_path = {player_path(p): int(i) for i, p in zip(tables.ids, tables.column("path")) if p}
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lstrip("-").isdecimal():
            found.append(int(tables.ids[tables.row(int(line))]))
        elif player_path(line) in by_path:
            found.append(by_path[player_path(line)])
        else:
            raise UnknownTrack(f"{path} line {number}: {line!r} is neither a track id nor an audio path of "
                               f"{tables.folder}")
    return found
