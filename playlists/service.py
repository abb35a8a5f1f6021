"""One entry point for every playlist kind (:mod:`playlists.kinds`), shared by the command, the server and the app,
and the lookup of a track by catalogue id, path relative to the music folder or MusicBrainz recording id."""
from __future__ import annotations

import functools
import os
import posixpath
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from playlists import kinds
from playlists.radio import Entry
from playlists.tables import Tables, UnknownTrack, parse_id
from schemas.errors import UserError

# A catalogue column that, when tracks.parquet has it, lets a MusicBrainz recording id name a track.
MBID_COLUMN = "musicbrainz_recording_id"
MBID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Playlist:
    """A playlist's tracks; ``smoothness`` for a journey (see :func:`playlists.journey.smoothness`)."""

    kind: str
    entries: list[Entry]
    smoothness: dict[str, float] | None = None


def make_playlist(tables: Tables, kind: str, *, resolve: Callable[[str | int], int] | None = None,
                  **arguments: Any) -> Playlist:
    """The playlist ``kind`` (one of :data:`playlists.kinds.KINDS`) with its declared parameters as keywords
    (``n``, ``seed``, ``start``, ...; any left out takes its default): limits checked (:class:`UserError` naming
    the flag), tracks looked up by ``resolve`` (default :meth:`Tables.resolve`, ids or titles; the server passes
    :meth:`TrackFinder.find`, which also knows paths; an int64 array of ids is taken as found). Unknown tracks
    raise :class:`~playlists.tables.UnknownTrack`."""
    declared = kinds.find(kind)
    unknown = sorted(set(arguments) - {p.name for p in declared.params})
    if unknown:
        raise TypeError(f"playlist kind {kind!r} takes no argument {unknown[0]!r}")
    resolve = resolve or tables.resolve
    declared.check(arguments)
    found: dict[str, Any] = {}
    for param in declared.params:
        value = arguments.get(param.name, param.default)
        if param.type == kinds.TRACK and value is not None:
            value = resolve(value)
        elif param.type == kinds.TRACKS and not (isinstance(value, np.ndarray) and value.dtype.kind == "i"):
            value = [resolve(v) for v in value or ()]
        found[param.name] = value
    result = declared.function(tables, **found)
    entries, figures = result if isinstance(result, tuple) else (result, None)
    return Playlist(kind, entries, figures)


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
