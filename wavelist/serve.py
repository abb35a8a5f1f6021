"""``wavelist serve``: the tables as a JSON HTTP API (Starlette on uvicorn).

The tables are loaded once into a :class:`Snapshot`; every request takes the current snapshot once and answers
from it alone, and a reload (``POST /reload``, or the watch on the TABLES folder) loads a whole new snapshot
before swapping one reference, so no request ever mixes two tables. Each query parameter is declared once in
:func:`endpoints` (a playlist kind's in its declaration, :mod:`playlists.kinds`), which drives both the checks (a
4xx answer naming the parameter) and the OpenAPI description.
The server reads nothing but the TABLES folder and serves no file at all; a track path in a request is only
compared, as a string, with the catalogue's paths relative to the music folder. The OpenSubsonic methods under
``/rest/`` are :mod:`wavelist.subsonic_api`'s.
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import wavelist
from playlists import kinds
from playlists.kinds import limits
from playlists.output import playlist_rows
from playlists.service import Playlist, TrackFinder, make_playlist
from playlists.tables import Tables, UnknownTrack, load_tables
from schemas import layout
from schemas.errors import UserError
from wavelist import subsonic_api

log = logging.getLogger("wavelist.serve")

MAX_COUNT = 500  # tracks in one answer (radio, like, alchemy, profile, search)
MAX_LIST = 100  # tracks named in one list parameter (seeds, stops, avoid, add, subtract, history)
MAX_QUERY_BYTES = 8192  # the query string
MAX_BODY_BYTES = 64 * 1024  # a request body (POST /profile)


class BadRequest(ValueError):
    """A request the server will not answer; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------------------------
# The tables, loaded once, swapped whole


def _signature(folder: Path) -> tuple | None:
    """What changes when embed publishes a new TABLES folder (by renaming a complete folder into place) or
    a table file is replaced: the folder's inode and each table file's inode, size and mtime. ``None`` while the
    folder is missing (between the two renames of a publish)."""
    try:
        stat = folder.stat()
        files = []
        for name in (layout.TableFiles.EMBEDDINGS, layout.TableFiles.NEIGHBOURS, layout.TableFiles.TRACKS, layout.SUCCESS_MARKER):
            try:
                s = (folder / name).stat()
                files.append((name, s.st_ino, s.st_size, s.st_mtime_ns))
            except FileNotFoundError:
                files.append((name, None))
        return (stat.st_dev, stat.st_ino, tuple(files))
    except FileNotFoundError:
        return None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Snapshot:
    """One complete set of tables and what the server derives from them."""

    tables: Tables
    finder: TrackFinder
    built_at: str  # when embed published the folder (its _SUCCESS marker, else embeddings.parquet)
    loaded_at: str
    signature: tuple | None
    generation: int

    @property
    def info(self) -> dict[str, Any]:
        return {"model_id": self.tables.model_id, "built_at": self.built_at, "loaded_at": self.loaded_at,
                "tracks": len(self.tables), "generation": self.generation}


def load_snapshot(folder: Path, music_folder: str | None, generation: int) -> Snapshot:
    """Load ``folder`` whole (vectors, catalogue, neighbour arrays, the columns answers use). If the folder was
    replaced while it was read (its signature changed), read it again: every file then comes from one folder."""
    from playlists.radio import artist_keys

    for _ in range(5):
        before = _signature(folder)
        tables = load_tables(folder)
        tables.neighbour_rows  # noqa: B018 (read now, not on the first request)
        artist_keys(tables)
        for name in ("title", "artist", "path", "genre"):
            tables.column(name)
        if _signature(folder) == before:
            break
        log.info("%s changed while it was read; reading it again", folder)
    else:
        raise BadRequest(f"{folder} kept changing while it was read; try again", 409)
    marker = folder / layout.SUCCESS_MARKER
    built = (marker if marker.exists() else folder / layout.TableFiles.EMBEDDINGS).stat().st_mtime
    finder = TrackFinder(tables, music_folder)
    finder.prepare()  # the lookups' indexes, built here rather than by the first request
    return Snapshot(tables=tables, finder=finder, built_at=_iso(built),
                    loaded_at=_iso(time.time()), signature=before, generation=generation)


class Service:
    """The current snapshot, a reload that swaps it atomically, and an optional watch on the folder."""

    def __init__(self, folder: str | Path, *, music_folder: str | None = None, watch_seconds: float = 2.0):
        self.folder = Path(folder)
        self.music_folder = music_folder
        self.current = load_snapshot(self.folder, music_folder, generation=1)
        self.last_error: str | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self.watch_seconds = watch_seconds
        self._watcher: threading.Thread | None = None

    def reload(self, *, only_if_changed: bool = False) -> bool:
        """Load the folder again and swap it in; ``False`` if ``only_if_changed`` and nothing changed. A folder
        that cannot be loaded leaves the current tables in place and raises."""
        with self._reload_lock:
            signature = _signature(self.folder)
            if only_if_changed and (signature is None or signature == self.current.signature):
                return False
            try:
                snapshot = load_snapshot(self.folder, self.music_folder, self.current.generation + 1)
            except (OSError, ValueError) as error:
                self.last_error = " ".join(str(error).split())
                raise
            self.current = snapshot  # the swap: one reference, read once by each request
            self.last_error = None
            log.info("loaded %s: %d tracks, model %s (generation %d)", self.folder, len(snapshot.tables),
                     snapshot.tables.model_id, snapshot.generation)
            return True

    def start_watch(self) -> None:
        if self.watch_seconds > 0 and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="wavelist-watch", daemon=True)
            self._watcher.start()

    def stop_watch(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_seconds):
            try:
                self.reload(only_if_changed=True)
            except (OSError, ValueError) as error:
                log.warning("kept the current tables: %s", " ".join(str(error).split()))


# ---------------------------------------------------------------------------------------------------------------
# Parameters: declared once, checked and described from the same declaration


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "track", "int", "float", "bool", "str"
    doc: str
    required: bool = False
    default: Any = None
    many: bool = False  # repeated: ?seeds=1&seeds=2
    minimum: float | None = None
    maximum: float | None = None

    def schema(self) -> dict[str, Any]:
        base = {"track": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
                "bool": {"type": "boolean"}, "str": {"type": "string"}}[self.kind]
        if self.minimum is not None:
            base["minimum"] = self.minimum
        if self.maximum is not None:
            base["maximum"] = self.maximum
        if self.default is not None and not self.many:
            base["default"] = self.default
        return {"type": "array", "items": base, "maxItems": MAX_LIST} if self.many else base

    def parse(self, values: list[str]) -> Any:
        if not values:
            if self.required:
                raise BadRequest(f"missing parameter {self.name!r}: {self.doc}")
            return [] if self.many else self.default
        if not self.many and len(values) > 1:
            raise BadRequest(f"parameter {self.name!r} is given {len(values)} times; give it once")
        if len(values) > MAX_LIST:
            raise BadRequest(f"parameter {self.name!r} lists {len(values)} tracks; at most {MAX_LIST}")
        parsed = [self._one(v) for v in values]
        return parsed if self.many else parsed[0]

    def _one(self, text: str) -> Any:
        if self.kind in ("track", "str"):
            if self.kind == "track" and not text.strip():
                raise BadRequest(f"parameter {self.name!r} is empty; give a track id")
            return text
        if self.kind == "bool":
            if text.lower() in ("1", "true", "yes", "on", ""):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise BadRequest(f"parameter {self.name!r} must be true or false, got {text[:40]!r}")
        try:
            value = int(text) if self.kind == "int" else float(text)
        except ValueError:
            what = "an integer" if self.kind == "int" else "a number"
            raise BadRequest(f"parameter {self.name!r} must be {what}, got {text[:40]!r}") from None
        if self.kind == "float" and not math.isfinite(value):
            raise BadRequest(f"parameter {self.name!r} must be a finite number, got {text[:40]!r}")
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"between {low:g} and {high:g}" if low is not None and high is not None else limits(low, high)
            raise BadRequest(f"parameter {self.name!r} must be {span}, got {text[:40]}")
        return value


TRACK = "a track id, exact title, path relative to the music folder or MusicBrainz recording id"


def served(param: kinds.Param, body: str | None = None) -> Param:
    """A kind's parameter as a query parameter: tracks as text, a count at most its ``cap`` (else
    :data:`MAX_COUNT`); the one a POST body may give (``body``) is not required in the query."""
    many = param.type == kinds.TRACKS
    kind = "track" if many or param.type == kinds.TRACK else param.type.__name__
    maximum = param.maximum if param.maximum is not None or param.type is not int else param.cap or MAX_COUNT
    doc = f"{param.help}: {TRACK}" if param.type == kinds.TRACK else param.help
    return Param(param.query_name, kind, doc, required=param.required and param.name != body,
                 default=None if many else param.default, many=many, minimum=param.minimum, maximum=maximum)


@dataclass(frozen=True)
class Endpoint:
    path: str
    summary: str
    params: tuple[Param, ...] = ()
    methods: tuple[str, ...] = ("GET",)
    tags: tuple[str, ...] = ("wavelist",)
    handler: Callable | None = field(default=None, compare=False)
    body: str | None = None  # the parameter a POST body gives, as a track list's text
    # whether a request is cheap enough (well under a millisecond) to answer on the event loop, without the hop
    # to a worker thread, which under load costs more than the answer (the GIL is handed over every 5 ms)
    inline: Callable[[Snapshot, dict[str, Any]], bool] = field(default=lambda snapshot, args: False, compare=False)


def _stored_slice(track: str, count: str) -> Callable[[Snapshot, dict[str, Any]], bool]:
    """A radio that is a slice of the stored neighbour lists: a track id, no filter, shorter than the lists."""
    def cheap(snapshot: Snapshot, args: dict[str, Any]) -> bool:
        return (str(args[track]).strip().isdecimal() and not args.get("variety")
                and args.get("max_per_artist") is None and not args.get("exclude_artist")
                and args[count] <= snapshot.tables.neighbour_rows.shape[1] // 2)
    return cheap


def _check_ids(snapshot: Snapshot, params: tuple[Param, ...], args: dict[str, Any]) -> None:
    """Raise :class:`UnknownTrack` now for a track parameter that is an id the tables do not hold: a lookup and
    its close ids cost microseconds whatever the catalogue's size, so the answer (404) need not wait for a
    worker thread that slow requests may hold."""
    for param in params:
        if param.kind == "track":
            values = args[param.name] if param.many else [args[param.name]]
            for value in values:
                if value is not None and str(value).strip().lstrip("-").isdecimal():
                    snapshot.finder.find(value)


# ---------------------------------------------------------------------------------------------------------------
# Answers


def _playlist_answer(snapshot: Snapshot, playlist: Playlist) -> dict[str, Any]:
    """The same rows as ``wavelist KIND --format json``, with the tables that answered."""
    answer = {"kind": playlist.kind, "tables": snapshot.info, "tracks": playlist_rows(snapshot.tables, playlist.entries)}
    if playlist.smoothness is not None:
        answer["smoothness"] = {k: round(v, 4) for k, v in playlist.smoothness.items()}
    return answer


def _playlist(kind: kinds.Kind) -> Callable[[Snapshot, dict[str, Any]], dict[str, Any]]:
    names = {p.query_name: p.name for p in kind.params}

    def answer(snapshot: Snapshot, args: dict[str, Any]) -> dict[str, Any]:
        options = {names[k]: v for k, v in args.items()}
        return _playlist_answer(snapshot, make_playlist(snapshot.tables, kind.name, resolve=snapshot.finder.find,
                                                        **options))
    return answer


def _track_row(snapshot: Snapshot, track_id: int) -> dict[str, Any]:
    return {**snapshot.tables.track(track_id), "relative_path": snapshot.finder.relative_path(track_id)}


def _track(snapshot: Snapshot, args: dict[str, Any]) -> dict[str, Any]:
    return {"tables": snapshot.info, "track": _track_row(snapshot, snapshot.finder.find(args["id"]))}


def _search(snapshot: Snapshot, args: dict[str, Any]) -> dict[str, Any]:
    found = snapshot.tables.search(args["q"], args["limit"])
    return {"tables": snapshot.info, "tracks": [_track_row(snapshot, i) for i in found]}


def _health(snapshot: Snapshot, args: dict[str, Any], service: Service) -> dict[str, Any]:
    return {"status": "ok", "version": wavelist.__version__, "folder": str(service.folder),
            "music_folder": snapshot.finder.music_folder, **snapshot.info,
            "watch_seconds": service.watch_seconds, "last_reload_error": service.last_error}


PLAYLIST = "Playlists (the same arguments and answers as the wavelist command)"
INLINE = {"radio": _stored_slice("seed", "n")}  # kinds some of whose requests are answered on the event loop


def playlist_endpoint(kind: kinds.Kind) -> Endpoint:
    """``/KIND``, from the kind's declaration (:data:`playlists.kinds.KINDS`)."""
    summary = f"{kind.help[0].upper()}{kind.help[1:]} (wavelist {kind.name})"
    if kind.body:
        summary += f"; POST takes the {kind.body} file's text as the body (M3U, wavelist JSON, ids one a line)"
    return Endpoint(f"/{kind.name}", summary, tuple(served(p, kind.body) for p in kind.params),
                    methods=("GET", "POST") if kind.body else ("GET",), tags=(PLAYLIST,), handler=_playlist(kind),
                    body=kind.body, inline=INLINE.get(kind.name, Endpoint.inline))


def endpoints() -> list[Endpoint]:
    """Every endpoint but the OpenSubsonic ones: the service's, one per playlist kind, the catalogue's."""
    return [
        Endpoint("/health", "The server's state and the tables it answers from (model_id, built_at, tracks)",
                 tags=("service",)),
        *(playlist_endpoint(kind) for kind in kinds.KINDS),
        Endpoint("/track", "One track's catalogue row",
                 (Param("id", "track", TRACK, required=True),), tags=("catalogue",), handler=_track),
        Endpoint("/search", "Tracks whose id, title or artist contains the words",
                 (Param("q", "str", "words to look for (case-insensitive)", required=True),
                  Param("limit", "int", f"number of tracks (1 to {MAX_COUNT})", default=20, minimum=1,
                        maximum=MAX_COUNT)), tags=("catalogue",), handler=_search),
        Endpoint("/reload", "Load the TABLES folder again and swap it in whole (also done by the watch)",
                 methods=("POST",), tags=("service",)),
        Endpoint("/openapi.json", "This description", tags=("service",)),
    ]


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of :func:`endpoints`."""
    error = {"description": "a bad request, one line naming the problem",
             "content": {"application/json": {"schema": {"type": "object", "properties": {
                 "error": {"type": "string"}, "status": {"type": "integer"}}}}}}
    paths: dict[str, Any] = {}
    for endpoint in endpoints():
        operation = {"summary": endpoint.summary, "tags": list(endpoint.tags),
                     "parameters": [{"name": p.name, "in": "query", "required": p.required, "description": p.doc,
                                     "schema": p.schema(), **({"explode": True} if p.many else {})}
                                    for p in endpoint.params],
                     "responses": {"200": {"description": "the answer (JSON)"}, "400": error,
                                   "404": {**error, "description": "an unknown track"}}}
        if endpoint.body:
            post = {**operation, "requestBody": {"content": {"text/plain": {"schema": {"type": "string",
                                                             "maxLength": MAX_BODY_BYTES}}}}}
            paths[endpoint.path] = {"get": operation, "post": post}
        else:
            paths[endpoint.path] = {m.lower(): operation for m in endpoint.methods}
    return {"openapi": "3.1.0",
            "info": {"title": "wavelist", "version": wavelist.__version__,
                     "description": "Playlists from wavelist's neighbour tables. Errors: 4xx with {\"error\": \"...\"}. "
                                    "The OpenSubsonic methods under /rest/ answer as the OpenSubsonic spec says "
                                    "(XML unless f=json, failures in the subsonic-response with HTTP 200)."},
            "paths": {**paths, **subsonic_api.openapi_paths()}}


# ---------------------------------------------------------------------------------------------------------------
# The app


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      default=lambda o: o.item() if hasattr(o, "item") else str(o))
    return Response(body, status_code=status, media_type="application/json")


def _error(request: Request, message: str, status: int) -> Response:
    message = " ".join(str(message).split())
    return _json({"error": message, "status": status}, status)


async def _read_body(request: Request) -> str:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"the request body is larger than {MAX_BODY_BYTES} bytes", 413)
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text") from None


def create_app(service: Service, *, threads: int = 4) -> Starlette:
    """The Starlette app answering from ``service``; queries run on at most ``threads`` worker threads."""
    limiter = anyio.CapacityLimiter(threads)

    def route(endpoint: Endpoint) -> Callable:
        params = {p.name: p for p in endpoint.params}

        async def handle(request: Request) -> Response:
            try:
                if len(request.scope.get("query_string", b"")) > MAX_QUERY_BYTES:
                    raise BadRequest(f"the query string is longer than {MAX_QUERY_BYTES} bytes", 414)
                length = request.headers.get("content-length")
                if length is not None and (not length.isdecimal() or int(length) > MAX_BODY_BYTES):
                    raise BadRequest(f"the request body is larger than {MAX_BODY_BYTES} bytes", 413)
                query = request.query_params
                unknown = sorted(set(query) - set(params))
                if unknown:
                    raise BadRequest(f"unknown parameter {unknown[0]!r}; {endpoint.path} takes "
                                     f"{', '.join(params) or 'no parameters'}")
                args = {name: p.parse(query.getlist(name)) for name, p in params.items()}
                snapshot = service.current  # read once: the whole answer comes from these tables
                if endpoint.path == "/health":
                    return _json(_health(snapshot, args, service))
                if endpoint.path == "/openapi.json":
                    return _json(openapi())
                if endpoint.path == "/reload":
                    try:
                        await anyio.to_thread.run_sync(service.reload)
                    except (OSError, ValueError) as error:
                        raise BadRequest(f"kept the current tables: {error}", 409) from None
                    return _json({"reloaded": True, "tables": service.current.info})
                if endpoint.body and request.method == "POST":
                    text = await _read_body(request)
                    if args[endpoint.body]:
                        raise BadRequest(f"give the {endpoint.body} either as the body (POST) or as "
                                         f"{endpoint.body}= (GET)")
                    args[endpoint.body] = await anyio.to_thread.run_sync(
                        snapshot.finder.parse_list, text, "the request body", limiter=limiter)
                _check_ids(snapshot, endpoint.params, args)
                if endpoint.inline(snapshot, args):
                    return _json(endpoint.handler(snapshot, args))
                answer = await anyio.to_thread.run_sync(endpoint.handler, snapshot, args, limiter=limiter)
                return _json(answer)
            except BadRequest as error:
                return _error(request, str(error), error.status)
            except UnknownTrack as error:
                return _error(request, str(error), 404)
            except (ValueError, LookupError) as error:
                return _error(request, str(error), 400)
            except Exception:  # noqa: BLE001 (the traceback goes to the server's log, never to the client)
                log.exception("%s %s failed", request.method, request.url.path)
                return _error(request, "internal error; the server's log has the details", 500)
        return handle

    routes = [Route(endpoint.path, route(endpoint), methods=list(endpoint.methods)) for endpoint in endpoints()]
    routes += subsonic_api.routes(lambda: service.current, limiter)  # OpenSubsonic under /rest/

    async def not_found(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 405:
            return _error(request, f"{request.method} is not allowed on {request.url.path}", 405)
        return _error(request, f"no endpoint {request.url.path[:200]!r}; GET /openapi.json lists them",
                      exc.status_code)

    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.service = service
    return app


def listen(address: str, port: int) -> socket.socket:
    """A socket bound to ``address:port`` (port 0: any free one); a one-line ``OSError`` if it cannot be."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {port}")
    try:
        family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
        # IPPROTO_TCP named: asyncio then sets TCP_NODELAY on every accepted connection. Without it a keep-alive
        # connection's answers (head and body sent apart) waited 40 ms each for the client's delayed ACK
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as error:
        raise OSError(f"cannot listen on {address}:{port}: {error.strerror or error}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {address}:{port}: {error.strerror or error}") from None
    return sock


def serve(tables: str, *, address: str = "127.0.0.1", port: int = 8000, music_folder: str | None = None,
          watch_seconds: float = 2.0, threads: int | None = None) -> None:
    """Load ``tables`` and answer on ``address:port`` until interrupted."""
    import uvicorn
    from threadpoolctl import threadpool_limits

    # one BLAS thread for the whole process: queries already run side by side on worker threads, and the
    # playlist code's per-query limit (playlists.tables.one_blas_thread) is process-wide, so not for threads
    threadpool_limits(limits=1, user_api="blas")
    sock = listen(address, port)  # before loading: a busy port is an error at once
    service = Service(tables, music_folder=music_folder, watch_seconds=watch_seconds)
    app = create_app(service, threads=threads or os.cpu_count() or 2)
    service.start_watch()
    snapshot = service.current
    log.info("serving %s (%d tracks, model %s) on http://%s:%d; GET /openapi.json describes the API", tables,
             len(snapshot.tables), snapshot.tables.model_id, address, sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
                            h11_max_incomplete_event_size=MAX_QUERY_BYTES + 8192)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        service.stop_watch()
        sock.close()
