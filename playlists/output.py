"""Playlists as a text table, JSON (one object per track, in order) or an M3U8 file for players."""
from __future__ import annotations

import json
from typing import Any

from playlists.radio import Entry
from playlists.tables import Tables

FORMATS = ("table", "json", "m3u")


def playlist_rows(tables: Tables, entries: list[Entry]) -> list[dict[str, Any]]:
    rows = []
    for entry in entries:
        track = tables.track(entry.track_id)
        rows.append({
            "track_id": entry.track_id,
            "genre": track.get("genre"),
            "artist": track.get("artist"),
            "title": track.get("title"),
            "path": track.get("path"),
            "similarity": round(entry.similarity, 4),
        })
    return rows


def render(tables: Tables, entries: list[Entry], fmt: str) -> str:
    """The playlist in ``fmt`` (one of :data:`FORMATS`)."""
    rows = playlist_rows(tables, entries)
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if fmt == "m3u":
        lines = ["#EXTM3U"]
        for row in rows:
            lines += [f"#EXTINF:-1,{row['artist'] or 'unknown'} - {row['title'] or row['track_id']}", row["path"] or ""]
        return "\n".join(lines)
    if fmt == "table":
        header = f"{'#':>3}  {'track_id':>8}  {'similarity':>10}  {'genre':<14} {'artist':<20} title"
        body = [
            f"{i:>3}  {r['track_id']:>8}  {r['similarity']:>10.3f}  {str(r['genre'] or ''):<14} "
            f"{str(r['artist'] or ''):<20} {r['title'] or ''}"
            for i, r in enumerate(rows, start=1)
        ]
        return "\n".join([header, *body])
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
