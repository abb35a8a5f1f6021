"""Playlists pushed into a Subsonic server (Navidrome, gonic, Airsonic, Ampache, LMS through its plugin,
supysonic): ``wavelist subsonic radio | journey | like``.

The server's songs are listed in pages (``search3`` with an empty query, else album by album) and matched to the
tables' tracks by their path relative to the music folder, else their MusicBrainz recording id, else artist and
title (case and spacing ignored). The playlist is the one ``wavelist KIND`` prints for the same flags; it is
created under the given name, or, when the user already owns a playlist of that name, that playlist's songs are
replaced. No other playlist is touched. The HTTP is httpx: form POSTs (GET where a server refuses POST), JSON
answers, token authentication (``t`` + ``s``) with a fallback to the hex-encoded password where a server refuses
tokens (supysonic has no token authentication).
"""
from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import secrets
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playlists.history import name_key, tracks_by_name
from playlists.service import MBID, TrackFinder
from playlists.tables import Tables, UnknownTrack
from playlists.text import for_terminal
from schemas.errors import UserError

log = logging.getLogger("wavelist.subsonic")

PASSWORD_ENV = "WAVELIST_SUBSONIC_PASSWORD"
CLIENT_NAME = "wavelist"
API_VERSION = "1.13.0"  # the first Subsonic API version with token authentication
PAGE = 500  # songs (or albums) asked for per request
MAX_PAGES = 20_000  # a bound on paging through a server that ignores offsets
NAMED = 20  # unmatched songs named on stderr; the rest are counted
WRONG_LOGIN, TOKEN_REFUSED, AUTH_REFUSED = 40, 41, 42  # Subsonic error codes
MISSING_PARAMETER = 10


class SubsonicError(UserError):
    """The server cannot be reached, refused the login, or answered something else than asked: one line."""


class ServerFailure(SubsonicError):
    """An answer with ``status: failed``; ``code`` is the Subsonic error code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def read_password(password_file: str | None) -> str:
    """The password: the first line of ``password_file``, else ``$WAVELIST_SUBSONIC_PASSWORD`` (never a
    command-line argument, which other users of the machine could read)."""
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as file:
                password = file.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read --password-file {password_file}: {getattr(error, 'strerror', None) or error}") \
                from None
        if not password:
            raise UserError(f"--password-file {password_file} is empty; its first line is the password")
        return password
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise UserError(f"give the Subsonic password in ${PASSWORD_ENV} or in a file named by --password-file "
                        "(never on the command line)")
    return password


def base_url(server: str) -> str:
    """The server's base address as clients take it (``http://host:port``, maybe with a path), without a
    trailing ``/rest``."""
    parts = urlsplit(server.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--server must be the server's base address, e.g. http://localhost:4533; got "
                        f"{for_terminal(server)!r}")
    path = parts.path.rstrip("/")
    path = path[:-len("/rest")] if path.endswith("/rest") else path
    return f"{parts.scheme}://{parts.netloc}{path}"


def _listed(value: Any) -> list[Any]:
    """A JSON array of a Subsonic answer (old servers write a one-element array as the element itself)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Client:
    """One user's session with a Subsonic server's REST API."""

    def __init__(self, server: str, user: str, password: str, *, timeout: float = 30.0):
        import httpx

        self.url = base_url(server)
        self.user = user
        self._password = password
        self.token_auth = True  # until the server refuses it
        self._post = True  # until the server refuses POST
        self._http = httpx.Client(base_url=self.url, timeout=timeout, follow_redirects=True,
                                  headers={"User-Agent": f"{CLIENT_NAME} (Subsonic client)"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _auth(self) -> dict[str, str]:
        if self.token_auth:
            salt = secrets.token_hex(8)
            return {"u": self.user, "t": hashlib.md5((self._password + salt).encode("utf-8")).hexdigest(), "s": salt}
        return {"u": self.user, "p": "enc:" + self._password.encode("utf-8").hex()}

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """The ``subsonic-response`` of ``method`` (lists in ``params`` are repeated parameters); a failure
        raises :class:`ServerFailure`, anything but a Subsonic answer :class:`SubsonicError`."""
        import httpx

        form = {**self._auth(), "v": API_VERSION, "c": CLIENT_NAME, "f": "json"}
        form.update({k: [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value)
                     for k, value in params.items() if value is not None})
        path = f"/rest/{method}.view"
        try:
            response = self._http.post(path, data=form) if self._post else self._http.get(path, params=form)
            if self._post and response.status_code in (405, 501):
                self._post = False
                response = self._http.get(path, params=form)
        except httpx.HTTPError as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            raise SubsonicError(f"cannot reach the Subsonic server at {self.url} ({reason}); is it running, and is "
                                "--server its address?") from None
        try:
            answer = response.json()["subsonic-response"]
            status = answer["status"]
        except (ValueError, KeyError, TypeError):
            raise SubsonicError(f"{self.url}{path} answered HTTP {response.status_code}, not a Subsonic answer; give "
                                "the server's base address as --server (the one its apps take)") from None
        if status != "ok":
            error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
            code = int(error.get("code", 0)) if str(error.get("code", 0)).isdigit() else 0
            message = for_terminal(error.get("message") or "no message")
            raise ServerFailure(code, f"the Subsonic server at {self.url} refused {method}: {message} (code {code})")
        return answer

    def login(self) -> None:
        """Check the user and password (``ping``); a server that refuses token authentication is asked again
        with the password, as Subsonic clients do."""
        for attempt in ("token", "password"):
            try:
                self.call("ping")
                return
            except ServerFailure as failure:
                refused = failure.code in (MISSING_PARAMETER, WRONG_LOGIN, TOKEN_REFUSED, AUTH_REFUSED)
                if attempt == "token" and refused:
                    self.token_auth = False
                    continue
                if failure.code == WRONG_LOGIN:
                    raise SubsonicError(f"wrong user name or password for {for_terminal(self.user)!r} at {self.url}") \
                        from None
                raise

    def songs(self) -> Iterator[dict[str, Any]]:
        """Every song the server lists: ``search3`` with an empty query, page by page; where a server answers
        that with nothing, album by album (``getAlbumList2``, ``getAlbum``)."""
        seen: set[str] = set()
        try:
            for offset in range(0, PAGE * MAX_PAGES, PAGE):
                page = _listed(self.call("search3", query="", songCount=PAGE, songOffset=offset, artistCount=0,
                                         albumCount=0).get("searchResult3", {}).get("song"))
                fresh = [s for s in page if isinstance(s, dict) and str(s.get("id")) not in seen]
                if not fresh:
                    break
                for song in fresh:
                    seen.add(str(song.get("id")))
                    yield song
        except ServerFailure as failure:
            log.info("search3 with an empty query was refused (%s); listing the songs album by album", failure)
        if seen:
            return
        albums: set[str] = set()
        for offset in range(0, PAGE * MAX_PAGES, PAGE):
            page = _listed(self.call("getAlbumList2", type="alphabeticalByName", size=PAGE,
                                     offset=offset).get("albumList2", {}).get("album"))
            fresh = [str(a["id"]) for a in page if isinstance(a, dict) and "id" in a and str(a["id"]) not in albums]
            if not fresh:
                break
            for album in fresh:
                albums.add(album)
                for song in _listed(self.call("getAlbum", id=album).get("album", {}).get("song")):
                    if isinstance(song, dict) and str(song.get("id")) not in seen:
                        seen.add(str(song.get("id")))
                        yield song

    def now_playing(self) -> dict[str, Any] | None:
        """The song the user plays now (the latest reported, where several players are), or None."""
        entries = [e for e in _listed(self.call("getNowPlaying").get("nowPlaying", {}).get("entry"))
                   if isinstance(e, dict) and str(e.get("username", "")).casefold() == self.user.casefold()]
        return min(entries, key=lambda e: float(e.get("minutesAgo") or 0)) if entries else None

    def own_playlists(self, name: str) -> list[dict[str, Any]]:
        """The user's own playlists called ``name`` (others' public playlists are never touched)."""
        return [p for p in _listed(self.call("getPlaylists").get("playlists", {}).get("playlist"))
                if isinstance(p, dict) and p.get("name") == name
                and str(p.get("owner", "")).casefold() == self.user.casefold()]

    def playlist_songs(self, playlist_id: str) -> list[str]:
        """The song ids of a playlist, in order."""
        return [str(e.get("id")) for e in _listed(self.call("getPlaylist", id=playlist_id).get("playlist", {})
                                                  .get("entry")) if isinstance(e, dict)]

    def put_playlist(self, name: str, song_ids: list[str]) -> bool:
        """Make the user's playlist ``name`` hold ``song_ids`` in order: the songs of the one they own replaced,
        else a new playlist. True if it was created."""
        own = self.own_playlists(name)
        if len(own) > 1:
            raise SubsonicError(f"{for_terminal(self.user)!r} owns {len(own)} playlists named {for_terminal(name)!r} "
                                f"at {self.url}; delete or rename all but one, or choose another --playlist")
        if not own:
            self.call("createPlaylist", name=name, songId=song_ids)
            own = self.own_playlists(name)
            if len(own) != 1 or self.playlist_songs(str(own[0]["id"])) != song_ids:
                raise SubsonicError(f"the Subsonic server at {self.url} did not create the playlist "
                                    f"{for_terminal(name)!r} as it was sent")
            return True
        playlist_id = str(own[0]["id"])
        self.call("createPlaylist", playlistId=playlist_id, songId=song_ids)  # replaces the songs (Subsonic 1.14)
        held = self.playlist_songs(playlist_id)
        if held != song_ids:  # a server that appended them instead: take the old ones out by position
            self.call("updatePlaylist", playlistId=playlist_id, songIndexToRemove=list(range(len(held))),
                      songIdToAdd=song_ids)
            if self.playlist_songs(playlist_id) != song_ids:
                raise SubsonicError(f"the Subsonic server at {self.url} did not replace the songs of the playlist "
                                    f"{for_terminal(name)!r}")
        return False


# ---------------------------------------------------------------------------------------------------------------
# The server's songs and the tables' tracks


@dataclass
class Library:
    """The server's songs matched to the tables' tracks."""

    song_of: dict[int, str] = field(default_factory=dict)  # track id -> the server's song id (the first found)
    track_of: dict[str, int] = field(default_factory=dict)  # the server's song id -> track id
    by: Counter = field(default_factory=Counter)  # how songs were matched: path, MusicBrainz id, artist and title
    unmatched: list[str] = field(default_factory=list)  # the songs matched to no track, described
    songs: int = 0

    def summary(self, url: str) -> str:
        matched = sum(self.by.values())
        return (f"matched {matched} of the {self.songs} songs at {url} to tracks ({self.by['path']} by path, "
                f"{self.by['MusicBrainz id']} by MusicBrainz id, {self.by['artist and title']} by artist and title); "
                f"{len(self.unmatched)} unmatched")


class Matcher:
    """Finds the track a server's song is: by its path relative to the music folder (``--music-dir``: the folder
    the server scans, as this machine sees it), else its MusicBrainz recording id, else artist and title."""

    def __init__(self, tables: Tables, music_dir: str | None):
        self.finder = TrackFinder(tables, music_dir)
        self.by_name = tracks_by_name(tables)

    def match(self, song: dict[str, Any]) -> tuple[int | None, str | None]:
        """``(track id, how)``, or ``(None, None)``."""
        path = song.get("path")
        if isinstance(path, str) and path:
            path = path.replace("\\", "/")
            if posixpath.isabs(path) or os.path.isabs(path):
                folder = self.finder.music_folder.replace(os.sep, "/").rstrip("/") + "/"
                path = path[len(folder):] if path.startswith(folder) else None
            track = self.finder.at_path(path) if path else None
            if track is not None:
                return track, "path"
        mbid = song.get("musicBrainzId")
        if isinstance(mbid, str) and MBID.match(mbid.strip()):
            try:
                return self.finder.find(mbid.strip()), "MusicBrainz id"
            except UnknownTrack:
                pass
        artist, title = song.get("artist"), song.get("title")
        if isinstance(artist, str) and isinstance(title, str) and artist.strip() and title.strip():
            track = self.by_name.get(name_key(artist, title))
            if track is not None:
                return track, "artist and title"
        return None, None


def describe(song: dict[str, Any]) -> str:
    """A server's song on one line, safe for a terminal."""
    what = song.get("path") or f"{song.get('artist') or 'unknown'} - {song.get('title') or ''}"
    return for_terminal(f"{what} (id {song.get('id')})")


def match_library(matcher: Matcher, songs: Iterator[dict[str, Any]]) -> Library:
    """The server's ``songs`` matched to tracks."""
    library = Library()
    for song in songs:
        library.songs += 1
        track, how = matcher.match(song)
        if track is None:
            library.unmatched.append(describe(song))
            continue
        library.by[how] += 1
        library.track_of[str(song["id"])] = track
        library.song_of.setdefault(track, str(song["id"]))
    return library


def report_unmatched(library: Library, url: str) -> None:
    """The count of songs matched, and the unmatched songs named (the first :data:`NAMED`), on stderr."""
    print(library.summary(url), file=sys.stderr)
    for name in library.unmatched[:NAMED]:
        print(f"  not in the tables: {name}", file=sys.stderr)
    if len(library.unmatched) > NAMED:
        print(f"  ... and {len(library.unmatched) - NAMED} more", file=sys.stderr)


def playing_track(client: Client, matcher: Matcher, library: Library, option: str) -> int:
    """The track of the song the user plays now (it fills a missing ``option``)."""
    song = client.now_playing()
    if song is None:
        raise SubsonicError(f"{for_terminal(client.user)!r} plays nothing at {client.url} now: play a song there, "
                            f"or give {option}")
    track = library.track_of.get(str(song.get("id")))
    if track is None:
        track, _ = matcher.match(song)
    if track is None:
        raise SubsonicError(f"the song {for_terminal(client.user)!r} plays, {describe(song)}, is not a track of "
                            f"{matcher.finder.tables.folder}; give {option} (or --music-dir, the folder the server "
                            "scans)")
    return track


def push(client: Client, tables: Tables, kind: str, options: dict[str, Any], playlist: str,
         music_dir: str | None = None) -> str:
    """Log in, match the server's songs, make playlist ``kind`` with the ``wavelist`` command's ``options`` (the
    song the user plays fills a missing seed or start), and put it into the user's playlist ``playlist``.
    Returns the line to print."""
    from playlists.service import make_playlist

    if not playlist.strip():
        raise UserError("--playlist needs a name")
    client.login()
    matcher = Matcher(tables, music_dir)
    library = match_library(matcher, client.songs())
    report_unmatched(library, client.url)
    if not library.track_of:
        raise SubsonicError(f"no song at {client.url} matched a track of {tables.folder}; is --music-dir the folder "
                            f"the server scans (now {matcher.finder.music_folder})?")
    options = dict(options)
    if kind == "radio" and options.get("seed") is None:
        options["seed"] = str(playing_track(client, matcher, library, "--seed"))
    if kind == "journey" and not options.get("start") and not options.get("via"):
        options["start"] = str(playing_track(client, matcher, library, "--from"))
    tracks = [e.track_id for e in make_playlist(tables, kind, **options).entries]
    absent = [t for t in tracks if t not in library.song_of]
    if absent:
        more = f" and {len(absent) - NAMED} more" if len(absent) > NAMED else ""
        print(f"{len(absent)} tracks of the playlist are not at {client.url}, left out: "
              f"{tables.describe(absent[:NAMED])}{more}", file=sys.stderr)
    songs = [library.song_of[t] for t in tracks if t in library.song_of]
    if not songs:
        raise SubsonicError(f"none of the playlist's {len(tracks)} tracks is at {client.url}")
    created = client.put_playlist(playlist, songs)
    verb = "created the playlist" if created else "replaced the songs of the playlist"
    return f"{verb} {for_terminal(playlist)!r} of {for_terminal(client.user)!r} at {client.url}: {len(songs)} songs"
