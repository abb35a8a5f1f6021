"""A listener's plays from a ListenBrainz export (JSON lines, or a JSON list) or a Last.fm-style scrobble CSV,
matched to catalogue tracks by MusicBrainz recording id, else by artist and title, one row at a time (a file of
any size in bounded memory; a malformed row is skipped and counted). No Beam, no TensorFlow."""
from __future__ import annotations

import csv
import json
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from playlists.service import MBID, TrackFinder
from playlists.tables import Tables, UnknownTrack
from schemas.errors import UserError
from storage import text_files
from storage.text_files import UserText

# Column names Last.fm exporters use, lower-cased: the first one present is taken.
ARTIST_COLUMNS = ("artist", "artist_name", "artist name")
TITLE_COLUMNS = ("track", "title", "track_name", "track name", "name")
MBID_COLUMNS = ("track_mbid", "recording_mbid", "mbid", "track mbid")
TIME_COLUMNS = ("uts", "timestamp", "listened_at", "date", "time", "utc_time")
MAX_TIME = 253_402_300_799  # 9999-12-31 23:59:59 UTC
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

    track_ids: np.ndarray  # [shape=(n,)] int64
    plays: int  # plays in the file
    by_mbid: int  # of the matched, how many by MusicBrainz id

    def summary(self) -> str:
        return (f"matched {len(self.track_ids)} of {self.plays} plays to catalogue tracks "
                f"({self.by_mbid} by MusicBrainz id, {len(self.track_ids) - self.by_mbid} by artist and title)")


@dataclass
class Skipped:
    """Rows of a history that are no play (not JSON, no ListenBrainz listen, a time that is none, a CSV row
    cut short): counted, the first one's line and reason kept for the message."""

    count: int = 0
    first: str = ""

    def add(self, line: int, reason: str) -> None:
        if not self.count:
            self.first = f"line {line}: {reason}"
        self.count += 1

    def __str__(self) -> str:
        return f"skipped {self.count} malformed row{'s' if self.count != 1 else ''} (first: {self.first})"


def read_plays(text: str, source: str = "the history") -> list[Play] | None:
    """The plays of a ListenBrainz export or a Last.fm-style CSV given as a string, oldest first (by their time
    when every play has one, else in file order; malformed rows left out); None when ``text`` is neither (a list
    of track ids, paths, an M3U ...)."""
    plays = plays_in(UserText.of(text, source), Skipped())
    if plays is None:
        return None
    plays = list(plays)
    if plays and all(p.at is not None for p in plays):
        plays.sort(key=lambda p: p.at)
    return plays


def plays_in(text: UserText, skipped: Skipped) -> Iterator[Play] | None:
    """The plays of ``text`` in file order, read one at a time: ListenBrainz listens (JSON lines, or a JSON list
    of listens) or a scrobble CSV (:func:`scrobble_columns`); each malformed row is added to ``skipped``. None
    when ``text`` is neither; then nothing of it but blank lines was read."""
    start = text.first()
    if start == "{":
        return _listen_lines(text, skipped)
    if start == "[":
        first = text.peek_item()
        if first is None or not (isinstance(first[1], dict) and "track_metadata" in first[1]):
            return None
        return _listen_list(text, skipped)
    if not start:
        return None
    columns = scrobble_columns(text.peek())
    return None if columns is None else _scrobbles(text, columns, skipped)


def _listen_lines(text: UserText, skipped: Skipped) -> Iterator[Play]:
    for line in text.lines(lambda number: skipped.add(number, f"longer than {text.limit:,} characters")):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            skipped.add(text.line, f"not JSON ({error.msg})")
            continue
        except (RecursionError, ValueError):  # nested too deeply; an integer of over 4,300 digits
            skipped.add(text.line, "not usable JSON (nested too deeply, or a number too long)")
            continue
        play = _listen(row)
        if isinstance(play, str):
            skipped.add(text.line, play)
        else:
            yield play


def _listen_list(text: UserText, skipped: Skipped) -> Iterator[Play]:
    for line, row in text.json_items():
        play = _listen(row)
        if isinstance(play, str):
            skipped.add(line, play)
        else:
            yield play


def _listen(row: Any) -> Play | str:
    """A ListenBrainz listen: ``track_metadata`` (artist_name, track_name, additional_info / mbid_mapping with
    recording_mbid) and ``listened_at`` (Unix time); what is wrong with it when it is none."""
    if not isinstance(row, dict) or not isinstance(row.get("track_metadata"), dict):
        return "not a ListenBrainz listen (no track_metadata)"
    meta = row["track_metadata"]
    mbid = None
    for part in ("mbid_mapping", "additional_info"):
        info = meta.get(part)
        if isinstance(info, dict) and isinstance(info.get("recording_mbid"), str) and info["recording_mbid"]:
            mbid = info["recording_mbid"]
            break
    at = row.get("listened_at")
    if at is not None:
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 <= at <= MAX_TIME:
            return "listened_at is not a Unix time between 1970 and 9999"
        at = float(at)
    return Play(_text(meta.get("artist_name")), _text(meta.get("track_name")), mbid, at)


@dataclass(frozen=True)
class ScrobbleColumns:
    """Where a scrobble CSV keeps each value (column numbers); ``header`` when its first row names them."""

    artist: int
    title: int
    mbid: int | None
    time: int | None
    header: bool
    time_name: str = "time"


def scrobble_columns(first_line: str) -> ScrobbleColumns | None:
    """The columns of a CSV whose first line is a header naming an artist and a track column, or of the
    header-less ``artist,album,track,date`` export; None for anything else."""
    try:
        header = next(csv.reader([first_line]), [])
    except csv.Error:
        return None
    names = [cell.strip().lower() for cell in header]
    artist, title = _index(names, ARTIST_COLUMNS), _index(names, TITLE_COLUMNS)
    if artist is not None and title is not None:
        time = _index(names, TIME_COLUMNS)
        return ScrobbleColumns(artist, title, _index(names, MBID_COLUMNS), time, True,
                               names[time] if time is not None else "time")
    if len(header) == 4:
        try:
            if _time(header[3]) is not None:
                return ScrobbleColumns(0, 2, None, 3, False, "date")
        except ValueError:
            return None
    return None


def _scrobbles(text: UserText, columns: ScrobbleColumns, skipped: Skipped) -> Iterator[Play]:
    """Plays of a scrobble CSV, one row at a time; a row that is cut short, has a time that is none, or is no
    CSV (a field over 131,072 characters, an unclosed quote) is skipped."""
    reader = csv.reader(text.lines(lambda number: skipped.add(number, f"longer than {text.limit:,} characters")))
    needed = max(c for c in (columns.artist, columns.title, columns.mbid, columns.time) if c is not None) + 1
    if columns.header:
        try:
            next(reader)
        except (csv.Error, StopIteration):
            return
    while True:
        start = text.line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            skipped.add(start, f"not CSV ({error}; an unclosed quote?)")
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < needed if columns.header else len(row) != 4:
            skipped.add(start, f"{len(row)} fields where {'the header names' if columns.header else 'there are'} "
                               f"{needed if columns.header else 4}")
            continue
        try:
            at = _time(row[columns.time]) if columns.time is not None else None
        except ValueError as error:
            skipped.add(start, f"{columns.time_name} {error}")
            continue
        yield Play(_text(row[columns.artist]), _text(row[columns.title]), _cell(row, columns.mbid), at)


def _index(header: list[str], names: tuple[str, ...]) -> int | None:
    return next((header.index(n) for n in names if n in header), None)


def _cell(row: list[str], index: int | None) -> str | None:
    return _text(row[index]) if index is not None and index < len(row) else None


def _text(value: Any) -> str | None:
    """A tag as text: a string stripped (None if empty); a number as written; anything else (a list, an
    object) None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return str(value).strip() or None


def _time(value: str | None) -> float | None:
    """Unix time from seconds or a date (ISO 8601, or as Last.fm exports write it; UTC unless it says); None for
    an empty cell; ``ValueError`` for one that is no time between 1970 and 9999."""
    value = (value or "").strip()
    if not value:
        return None
    at = None
    if value.isascii() and value.isdigit() and len(value) <= 12:
        at = float(value)
    else:
        for fmt in DATE_FORMATS:
            try:
                at = datetime.strptime(value, fmt).replace(tzinfo=timezone.utc).timestamp()
                break
            except ValueError:
                continue
        else:
            try:
                moment = datetime.fromisoformat(value)
                at = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
            except (ValueError, OverflowError):
                pass
    if at is None or not 0 <= at <= MAX_TIME:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValueError(f"{shown!r} is not a time between 1970 and 9999")
    return at


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


def match_plays(tables: Tables, plays: Iterable[Play]) -> Matched:
    """The catalogue track of each play that has one, oldest first (by their time when every play has one, else
    in the order given): by MusicBrainz recording id, else by artist and title (case and spaces ignored); plays of
    other music are left out. ``plays`` is read once, one at a time: only the matched tracks are kept."""
    finder = TrackFinder(tables)
    by_name = tracks_by_name(tables)
    found, times = array("q"), array("d")
    count, by_mbid, timed = 0, 0, True
    for play in plays:
        count += 1
        timed = timed and play.at is not None
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
            times.append(play.at or 0.0)
    ids = np.array(found, dtype=np.int64)
    if timed:
        ids = ids[np.argsort(np.array(times), kind="stable")]
    return Matched(ids, count, by_mbid)


def read_history(tables: Tables, path: str) -> tuple[np.ndarray, str | None]:
    """The track ids a history file names, oldest first, and what reading it said (None for a plain list), read
    in bounded memory: a ListenBrainz export or scrobble CSV (:func:`plays_in`; malformed rows skipped and
    counted), else an M3U, wavelist's JSON, or ids or paths one a line (:func:`playlists.track_list.track_ids`).
    Any encoding :data:`storage.text_files.ENCODING_RULE` reads. A history of which no play matches, or with no
    play at all, raises :class:`UserError` naming the file (and the first malformed line)."""
    from playlists.output import track_namer
    from playlists.track_list import track_ids

    with text_files.open_text(path) as handle:
        text = UserText(handle, str(path))
        skipped = Skipped()
        plays = plays_in(text, skipped)
        if plays is None:
            ids = track_ids(text, track_namer(tables))
            if not len(ids):
                raise UserError(f"{path} names no plays and no tracks")
            return ids, None
        matched = match_plays(tables, plays)
    if not matched.plays:
        if skipped.count:
            raise UserError(f"{path} {skipped.first}; no row of it is a play ({skipped.count} malformed)")
        raise UserError(f"{path} holds no plays")
    said = matched.summary() + (f"; {skipped}" if skipped.count else "")
    if not len(matched.track_ids):
        raise UserError(f"{path}: {said}; are they plays of music in {tables.folder}?")
    return matched.track_ids, said
