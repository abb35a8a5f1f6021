"""Playlists played by MPD (the Music Player Daemon), through python-mpd2: ``wavelist mpd radio`` and
``wavelist mpd journey``.

MPD names a song by its path relative to its music directory; :class:`~playlists.service.TrackFinder` maps
those paths to catalogue tracks and back (``--music-dir`` is MPD's music directory as this machine sees it).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from playlists.service import TrackFinder, make_playlist
from playlists.tables import Tables, UnknownTrack
from playlists.text import for_terminal
from schemas.errors import UserError

log = logging.getLogger("wavelist.mpd")
DEFAULT_PORT = 6600


def _mpd_errors() -> tuple[type[Exception], ...]:
    import mpd

    return (mpd.MPDError,)


MPD_ERRORS = _mpd_errors()  # what python-mpd2 raises: a lost connection, a refused command


class PlayerError(UserError):
    """MPD cannot be reached, or refused a command: a one-line user error."""


def connect(host: str = "localhost", port: int = DEFAULT_PORT, timeout: float = 10.0) -> Any:
    """A connected ``mpd.MPDClient``; a server that cannot be reached raises :class:`PlayerError`."""
    import mpd

    client = mpd.MPDClient()
    client.timeout = timeout
    client.idletimeout = None
    try:
        client.connect(host, port)
    except (OSError, mpd.MPDError) as error:
        raise PlayerError(f"cannot reach MPD at {host}:{port} ({error}); is it running? (--host, --port)") from None
    return client


@dataclass
class Session:
    """What one ``wavelist mpd`` run queues: the tables, MPD's paths, and every file queued so far (a track is
    never queued twice)."""

    client: Any
    tables: Tables
    finder: TrackFinder
    options: dict[str, Any] = field(default_factory=dict)  # radio's options: max_per_artist, variety, ...
    queued: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.queued |= set(self.queue())

    def queue(self) -> list[str]:
        """The files in MPD's queue, in order."""
        return [song["file"] for song in self.client.playlistinfo()]

    def track_of(self, file: str) -> int:
        """The catalogue track MPD's ``file`` is."""
        try:
            return self.finder.find(file)
        except (UnknownTrack, ValueError):
            raise PlayerError(f"MPD's {for_terminal(file)!r} is not a track of {self.tables.folder} under the music "
                              f"folder {self.finder.music_folder}; give --music-dir (MPD's music_directory) "
                              "or --seed") from None

    def playing(self) -> int | None:
        """The catalogue track MPD plays (or is paused on), or None when it plays nothing."""
        file = self.client.currentsong().get("file")
        return None if not file else self.track_of(file)

    def add(self, track_ids: Iterable[int]) -> list[int]:
        """Queue ``track_ids`` not queued before (in this run or already in MPD's queue); the ones queued."""
        import mpd

        added = []
        for track_id in track_ids:
            file = self.finder.relative_path(track_id)
            if file is None:
                log.warning("track %d lies outside the music folder %s: not queued", track_id,
                            self.finder.music_folder)
                continue
            if file in self.queued:
                continue
            try:
                self.client.add(file)
            except mpd.CommandError as error:
                raise PlayerError(f"MPD cannot queue {for_terminal(file)!r} ({error}); is its database up to date "
                                  "(mpc update) and --music-dir its music_directory?") from None
            self.queued.add(file)
            added.append(track_id)
        return added

    def fresh_radio(self, seed: int, n: int) -> list[int]:
        """Up to ``n`` tracks of ``seed``'s radio that were not queued yet."""
        wanted = min(n + len(self.queued), len(self.tables) - 1)
        entries = make_playlist(self.tables, "radio", seed=seed, n=wanted, **self.options).entries
        fresh = [e.track_id for e in entries if self.finder.relative_path(e.track_id) not in self.queued]
        return fresh[:n]

    def remaining(self) -> int:
        """How many songs of the queue are after the current one (all of them when MPD plays nothing)."""
        status = self.client.status()
        return int(status.get("playlistlength", 0)) - (int(status["song"]) + 1 if "song" in status else 0)

    def top_up(self, n: int, low: int) -> list[int]:
        """When fewer than ``low`` songs are left after the current one, queue ``n`` more: the radio of the last
        song of the queue (or of the current one). Returns the tracks queued."""
        if self.remaining() >= low:
            return []
        files = self.queue()
        seed = self.track_of(files[-1]) if files else self.playing()
        if seed is None:
            return []
        added = self.add(self.fresh_radio(seed, n))
        log.info("mpd: queued %d more tracks after %s", len(added), self.tables.describe([seed]))
        return added

    def play_if_stopped(self, first: int | None) -> None:
        """Start playing (at ``first``'s song when given) unless MPD already plays."""
        if self.client.status().get("state") == "play":
            return
        file = self.finder.relative_path(first) if first is not None else None
        files = self.queue()
        self.client.play(files.index(file) if file in files else 0)


def start(session: Session, seed: str | None) -> tuple[int, bool]:
    """The seed track (``seed`` resolved, else the song MPD plays) and whether MPD already plays it."""
    playing = session.playing()
    if seed is not None:
        track = session.tables.resolve(seed)
        return track, track == playing
    if playing is None:
        raise PlayerError("MPD plays nothing: start a song in MPD or give --seed")
    return playing, True


def radio(session: Session, seed: str | None, n: int) -> list[int]:
    """Queue the radio of ``seed`` (or of the song MPD plays); the seed first when MPD does not play it."""
    track, is_playing = start(session, seed)
    queued = [] if is_playing else session.add([track])
    queued += session.add(session.fresh_radio(track, n))
    session.play_if_stopped(None if is_playing else track)
    return queued


def journey(session: Session, seed: str | None, to: str, n: int, max_per_artist: int | None = None) -> list[int]:
    """Queue a journey from ``seed`` (or the song MPD plays) to ``to``."""
    track, is_playing = start(session, seed)
    entries = make_playlist(session.tables, "journey", start=str(track), end=to, n=n,
                            max_per_artist=max_per_artist).entries
    steps = [e.track_id for e in entries]
    queued = session.add(steps[1:] if is_playing else steps)
    session.play_if_stopped(None if is_playing else track)
    return queued


def keep_going(session: Session, n: int, low: int, until: Callable[[], bool] = lambda: False) -> None:
    """Keep the radio going: whenever MPD's queue or player changes and fewer than ``low`` songs are left,
    queue ``n`` more, never one queued before. Runs until interrupted (or ``until()`` is true)."""
    while not until():
        session.top_up(n, low)
        session.client.idle("playlist", "player")
