"""A listener's plays from a ListenBrainz export (JSON lines, or a JSON list) or a Last.fm-style scrobble CSV,
matched to catalogue tracks by MusicBrainz recording id, else by artist and title. No Beam, no TensorFlow."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from playlists.service import MBID, TrackFinder
from playlists.tables import Tables, UnknownTrack
from schemas.errors import UserError

# Column names Last.fm exporters use, lower-cased: the first one present is taken.
ARTIST_COLUMNS = ("artist", "artist_name", "artist name")
TITLE_COLUMNS = ("track", "title", "track_name", "track name", "name")
MBID_COLUMNS = ("track_mbid", "recording_mbid", "mbid", "track mbid")
TIME_COLUMNS = ("uts", "timestamp", "listened_at", "date", "time", "utc_time")
DATE_FORMATS = ("%d %b %Y %H:%M", "%d %b %Y, %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Play:
    """One listen as an export gives it."""

    artist: str | None
    title: str | None
    recording_mbid: str | None
    at: float | None  # Unix time, when the export gives it


@dataclass(frozen=True)
class Matched:
    """The catalogue tracks of a history's plays, oldest first, and how they were found."""

    track_ids: list[int]
    plays: int  # plays in the file
    by_mbid: int  # of the matched, how many by MusicBrainz id

    def summary(self) -> str:
        return (f"matched {len(self.track_ids)} of {self.plays} plays to catalogue tracks "
                f"({self.by_mbid} by MusicBrainz id, {len(self.track_ids) - self.by_mbid} by artist and title)")


def read_plays(text: str, source: str = "the history") -> list[Play] | None:
    """The plays of a ListenBrainz export or a Last.fm-style CSV, oldest first (by their time when every play
    has one, else in file order); None when ``text`` is neither (a list of track ids, paths, an M3U ...)."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        plays = [_listen(json.loads(line), source) for line in text.splitlines() if line.strip()]
    elif stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not (isinstance(rows, list) and rows and isinstance(rows[0], dict) and "track_metadata" in rows[0]):
            return None
        plays = [_listen(row, source) for row in rows]
    else:
        plays = _scrobbles(text, source)
        if plays is None:
            return None
    if plays and all(p.at is not None for p in plays):
        plays.sort(key=lambda p: p.at)
    return plays


def _listen(row: Any, source: str) -> Play:
    """A ListenBrainz listen: ``track_metadata`` (artist_name, track_name, additional_info / mbid_mapping with
    recording_mbid) and ``listened_at``."""
    if not isinstance(row, dict) or not isinstance(row.get("track_metadata"), dict):
        raise UserError(f"{source}: a line is not a ListenBrainz listen (no track_metadata)")
    meta = row["track_metadata"]
    mbid = None
    for part in ("mbid_mapping", "additional_info"):
        info = meta.get(part)
        if isinstance(info, dict) and info.get("recording_mbid"):
            mbid = str(info["recording_mbid"])
            break
    at = row.get("listened_at")
    return Play(_text(meta.get("artist_name")), _text(meta.get("track_name")), mbid,
                float(at) if isinstance(at, (int, float)) else None)


def _scrobbles(text: str, source: str) -> list[Play] | None:
    """Plays of a CSV with a header naming an artist and a track column, or of the header-less
    ``artist,album,track,date`` export; None for anything else."""
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        return None
    header = [cell.strip().lower() for cell in rows[0]]
    artist, title = _index(header, ARTIST_COLUMNS), _index(header, TITLE_COLUMNS)
    if artist is not None and title is not None:
        mbid, time = _index(header, MBID_COLUMNS), _index(header, TIME_COLUMNS)
        return [Play(_cell(r, artist), _cell(r, title), _cell(r, mbid), _time(_cell(r, time))) for r in rows[1:]]
    if all(len(r) == 4 for r in rows) and _time(rows[0][3]) is not None:
        return [Play(_cell(r, 0), _cell(r, 2), None, _time(r[3])) for r in rows]
    return None


def _index(header: list[str], names: tuple[str, ...]) -> int | None:
    return next((header.index(n) for n in names if n in header), None)


def _cell(row: list[str], index: int | None) -> str | None:
    return _text(row[index]) if index is not None and index < len(row) else None


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value is not None else None


def _time(value: str | None) -> float | None:
    """Unix time from seconds or a date as Last.fm exports write it (UTC); None if unreadable."""
    if not value:
        return None
    if value.isdigit():
        return float(value)
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def name_key(artist: str | None, title: str | None) -> tuple[str, str]:
    """What artist and title are matched by: case and spacing ignored."""
    return tuple(" ".join((s or "").casefold().split()) for s in (artist, title))  # type: ignore[return-value]


def tracks_by_name(tables: Tables) -> dict[tuple[str, str], int]:
    """Catalogue tracks by :func:`name_key` of their artist and title (the lowest track id where several share
    one); tracks without an artist or a title are left out."""
    by_name: dict[tuple[str, str], int] = {}
    for track_id, artist, title in zip(tables.ids.tolist(), tables.column("artist"), tables.column("title")):
        if artist and title:
            by_name.setdefault(name_key(artist, title), track_id)
    return by_name


def match_plays(tables: Tables, plays: list[Play]) -> Matched:
    """The catalogue track of each play that has one: by MusicBrainz recording id, else by artist and title
    (case and spaces ignored); plays of other music are left out."""
    finder = TrackFinder(tables)
    by_name = tracks_by_name(tables)
    found, by_mbid = [], 0
    for play in plays:
        track = None
        if play.recording_mbid and MBID.match(play.recording_mbid):
            try:
                track = finder.find(play.recording_mbid)
                by_mbid += 1
            except UnknownTrack:
                track = None
        if track is None:
            track = by_name.get(name_key(play.artist, play.title))
        if track is not None:
            found.append(track)
    return Matched(found, len(plays), by_mbid)


def read_history(tables: Tables, path: str) -> tuple[list[int], str | None]:
    """The track ids a history file names, oldest first, and what matching said (None for a plain list): a
    ListenBrainz export or scrobble CSV (:func:`read_plays`), else an M3U, wavelist's JSON, or ids or paths one a
    line (:func:`playlists.output.parse_track_list`). A history of which no play matches raises ``ValueError``."""
    from pathlib import Path

    from playlists.output import parse_track_list

    text = Path(path).read_text(encoding="utf-8")
    plays = read_plays(text, source=path)
    if plays is None:
        return parse_track_list(tables, text, source=path), None
    matched = match_plays(tables, plays)
    if not matched.track_ids:
        raise UserError(f"{path}: {matched.summary()}; are they plays of music in {tables.folder}?")
    return matched.track_ids, matched.summary()
