"""One entry point per playlist kind, shared by the ``wavelist`` command and the HTTP server, and the lookup of
a track by catalogue id, path relative to the music folder or MusicBrainz recording id."""
from __future__ import annotations

import functools
import os
import posixpath
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from playlists.radio import Entry
from playlists.tables import Tables, UnknownTrack, parse_id
from schemas.errors import UserError

KINDS = ("radio", "like", "journey", "alchemy", "profile")
# A catalogue column that, when tracks.parquet has it, lets a MusicBrainz recording id name a track.
MBID_COLUMN = "musicbrainz_recording_id"
MBID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Playlist:
    """A playlist's tracks; ``smoothness`` for a journey (see :func:`playlists.journey.smoothness`)."""

    kind: str
    entries: list[Entry]
    smoothness: dict[str, float] | None = None


def journey_stops(start: str | None, end: str | None, via: Sequence[str]) -> list[str]:
    """The stops of a journey given as ``start`` and ``end`` or as ``via`` (A B ...), checked."""
    if via and (start or end):
        raise UserError("give either --from A --to B or --via A B ..., not both")
    if via:
        if len(via) < 2:
            raise UserError("--via needs at least two tracks")
        return list(via)
    if not (start and end):
        raise UserError("a journey needs --from A --to B (or --via A B ...)")
    return [start, end]


def make_playlist(tables: Tables, kind: str, *, n: int = 20, seed: str | int | None = None,
                  seeds: Sequence[str | int] = (), start: str | None = None, end: str | None = None,
                  via: Sequence[str | int] = (), avoid: Sequence[str | int] = (), add: Sequence[str | int] = (),
                  subtract: Sequence[str | int] = (), history: Sequence[str | int] | np.ndarray = (),
                  exclude_artist: bool = False, variety: float = 0.0, max_per_artist: int | None = None,
                  half_life: float = 20.0, resolve: Callable[[str | int], int] | None = None) -> Playlist:
    """The playlist ``kind`` (one of :data:`KINDS`) with the arguments of the ``wavelist`` subcommand of that
    name; tracks are named by id or exact title (``history`` by id). Bad arguments raise ``ValueError``, unknown
    tracks :class:`~playlists.tables.UnknownTrack`. ``resolve`` maps a name to a track id (default
    :meth:`Tables.resolve`; the server passes :meth:`TrackFinder.find`, which also knows paths)."""
    from playlists.alchemy import alchemy
    from playlists.profile import profile
    from playlists.journey import journey_via, smoothness
    from playlists.radio import like, radio

    if max_per_artist is not None and max_per_artist < 1:
        raise UserError(f"--max-per-artist must be 1 or more, got {max_per_artist}")
    resolve = resolve or tables.resolve
    if kind == "radio":
        if seed is None:
            raise UserError("radio needs a seed track")
        entries = radio(tables, resolve(seed), n, exclude_artist=exclude_artist, variety=variety,
                        max_per_artist=max_per_artist)
    elif kind == "like":
        entries = like(tables, [resolve(s) for s in seeds], n, exclude_artist=exclude_artist, variety=variety,
                       max_per_artist=max_per_artist)
    elif kind == "alchemy":
        entries = alchemy(tables, [resolve(s) for s in add], [resolve(s) for s in subtract], n, variety=variety,
                          max_per_artist=max_per_artist)
    elif kind == "profile":
        if not (isinstance(history, np.ndarray) and history.dtype.kind == "i"):  # ids already found: checked there
            history = [resolve(s) for s in history]
        entries = profile(tables, history, n, half_life=half_life, variety=variety, max_per_artist=max_per_artist)
    elif kind == "journey":
        stops = [resolve(s) for s in journey_stops(start, end, [str(s) for s in via])]
        entries = journey_via(tables, stops, n, exclude=[resolve(s) for s in avoid], max_per_artist=max_per_artist)
        return Playlist(kind, entries, smoothness(tables, entries, stops))
    else:
        raise ValueError(f"unknown playlist kind {kind!r}; choose one of {', '.join(KINDS)}")
    return Playlist(kind, entries)


class TrackFinder:
    """Finds a track by what a music server knows of it: the catalogue's track id, the audio file's path relative
    to ``music_folder`` (default: the folder holding every catalogue path), or a MusicBrainz recording id when
    tracks.parquet has a ``musicbrainz_recording_id`` column. Only strings are compared: no file is opened
    (:meth:`audio_file` alone looks at the file system, to say whether a track's file may be served)."""

    def __init__(self, tables: Tables, music_folder: str | Path | None = None):
        self.tables = tables
        self._music_folder = os.path.abspath(music_folder) if music_folder else None
        self._lock = threading.Lock()
        self._by_path: dict[str, int] | None = None
        self._by_mbid: dict[str, int] | None = None

    @property
    def music_folder(self) -> str:
        """The folder relative paths are taken from."""
        if self._music_folder is None:
            paths = [os.path.abspath(p) for p in self.tables.column("path")[:100_000] if p and "://" not in p]
            self._music_folder = os.path.commonpath(paths) if paths else os.path.abspath(".")
            if paths and len(paths) == 1:
                self._music_folder = os.path.dirname(self._music_folder)
        return self._music_folder

    def relative_path(self, track_id: int) -> str | None:
        """The track's audio path relative to the music folder (``None`` if it lies elsewhere or is a URL)."""
        path = self.tables.column("path")[self.tables.row(track_id)]
        if not path or "://" in path:
            return None
        relative = os.path.relpath(os.path.abspath(path), self.music_folder)
        return None if relative.startswith("..") else relative.replace(os.sep, "/")

    def audio_file(self, track_id: int) -> str | None:
        """The file to serve for ``track_id``, checked now: its catalogue path lies in the music folder and
        still leads to the file ingest read (``real_path``, for a path that was a link then), or, where ingest
        recorded none, to a file inside the music folder, links followed. ``None`` for anything else: no path, a
        URL, a missing file, a file swapped for a link that leads elsewhere. Raises
        :class:`~playlists.tables.UnknownTrack` for an id the tables do not hold."""
        row = self.tables.row(track_id)
        path = self.tables.column("path")[row]
        if not path or "://" in path:
            return None
        absolute = os.path.abspath(path)
        if not absolute.startswith(self.music_folder.rstrip(os.sep) + os.sep):
            return None
        real = os.path.realpath(absolute)
        recorded = self.tables.column("real_path")[row]
        if recorded:
            if real != recorded:
                return None
        elif not real.startswith(self._real_music_folder.rstrip(os.sep) + os.sep):
            return None
        return real if os.path.isfile(real) else None

    @functools.cached_property
    def _real_music_folder(self) -> str:
        return os.path.realpath(self.music_folder)

    def _paths(self) -> dict[str, int]:
        with self._lock:
            if self._by_path is None:
                folder = self.music_folder + os.sep
                by_path = {}
                for track_id, path in zip(self.tables.ids.tolist(), self.tables.column("path")):
                    if path and "://" not in path:
                        path = os.path.abspath(path)
                        if path.startswith(folder):
                            by_path[path[len(folder):].replace(os.sep, "/")] = track_id
                self._by_path = by_path
            return self._by_path

    def prepare(self) -> None:
        """Build now the indexes lookups build on first use (a server does it before it answers)."""
        self.tables.prepare()
        self._paths()
        self._mbids()

    def _mbids(self) -> dict[str, int]:
        with self._lock:
            if self._by_mbid is None:
                if MBID_COLUMN not in self.tables.catalogue.column_names:
                    self._by_mbid = {}
                else:
                    self._by_mbid = {str(m).lower(): i for i, m in zip(self.tables.ids.tolist(),
                                                                       self.tables.column(MBID_COLUMN)) if m}
            return self._by_mbid

    def at_path(self, relative: str) -> int | None:
        """The track whose audio file lies at ``relative`` (a path relative to the music folder), else None."""
        return self._paths().get(posixpath.normpath(str(relative).replace("\\", "/")))

    def find(self, text: str) -> int:
        """The track id that ``text`` names: an id, a MusicBrainz recording id, an exact title or a relative path.

        A path that leaves the music folder (absolute, or with ``..``) raises ``ValueError``; anything that
        names no track raises :class:`~playlists.tables.UnknownTrack`."""
        text = str(text).strip()
        if not text:
            raise UserError("the track id is empty")
        if parse_id(text) is not None:
            return self.tables.resolve(text)  # an id (with close ids when unknown)
        if MBID.match(text):
            if MBID_COLUMN not in self.tables.catalogue.column_names:
                raise UnknownTrack(f"{text!r} looks like a MusicBrainz recording id, but {self.tables.folder}/"
                                   f"tracks.parquet has no {MBID_COLUMN} column")
            if text.lower() in self._mbids():
                return self._mbids()[text.lower()]
            raise UnknownTrack(f"no track with MusicBrainz recording id {text} in {self.tables.folder}")
        if "/" not in text and "\\" not in text and not text.startswith("."):
            try:  # an exact title, as the command line takes it (no suggestions: a path may still match)
                return self.tables.resolve(text, suggest=False)
            except UnknownTrack:
                pass
        relative = posixpath.normpath(text.replace("\\", "/"))
        if text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", text) or relative == ".." \
                or relative.startswith("../") or "\x00" in text:
            raise UserError(f"path {text!r} is outside the music folder; give a path relative to it")
        if relative in self._paths():
            return self._paths()[relative]
        raise UnknownTrack(f"{text!r} is neither a track id, nor the path of a track relative to the music folder, "
                           f"nor a MusicBrainz recording id of {self.tables.folder}")

    def parse_list(self, text: str, source: str = "the list") -> list[int]:
        """Track ids in ``text``, in order (:func:`playlists.track_list.track_ids`: M3U, wavelist's JSON, ids or
        audio paths one a line), each looked up by :meth:`list_entry`: no path is looked up on the file system."""
        from playlists.track_list import track_ids
        from storage.text_files import UserText

        return track_ids(UserText.of(text, source), self.list_entry).tolist()

    def list_entry(self, line: str) -> int:
        """The track a track list's line names (:meth:`find`); an absolute path must lie in the music folder."""
        if os.path.isabs(line):
            path = os.path.normpath(line)
            if not path.startswith(self.music_folder + os.sep):
                raise UserError(f"{line!r} is outside the music folder {self.music_folder}")
            line = path[len(self.music_folder) + 1:]
        return self.find(line)
