"""``wavelist serve``'s OpenSubsonic side: the ``sonicSimilarity`` extension (version 1) as the spec merged it, so
that an OpenSubsonic client or a music server's plugin asks wavelist for similar songs.

Every method answers under ``/rest/METHOD`` and ``/rest/METHOD.view``, to GET and to POST form data (the
``formPost`` extension), in XML unless ``f=json``. Failures are answered in the Subsonic envelope with HTTP 200
(``status: failed``; ``error.code`` 10 for a missing parameter, 70 for an unknown song, 0 otherwise), as Subsonic
servers answer them: clients such as py-opensonic raise on any other HTTP status before they read the code. The
authentication parameters (``u``, ``p``, ``t``, ``s``, ``apiKey``) are accepted and ignored: the server has no
login, like the rest of ``wavelist serve``.

``similarity`` is normalised per loaded tables (:class:`Calibration`): the share of sampled pairs of distinct
tracks whose cosine is lower, so 0.5 is a typical pair of the catalogue, 0.99 a pair closer than 99 % of pairs,
and 1.0 is kept for the query song (``getSonicSimilarTracks``) or the start song (``findSonicPath``) alone.
"""
from __future__ import annotations

import json
import logging
import math
import mimetypes
import re
import threading
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qsl

import anyio
import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import wavelist
from playlists.tables import Tables, UnknownTrack, one_blas_thread
from schemas.errors import UserError

log = logging.getLogger("wavelist.serve")

API_VERSION = "1.16.1"
XML_NAMESPACE = "http://subsonic.org/restapi"
EXTENSIONS = ({"name": "sonicSimilarity", "versions": [1]}, {"name": "formPost", "versions": [1]})
MAX_SIMILAR = 500  # songs in one getSonicSimilarTracks answer (a larger count is cut to it)
MAX_PATH = 200  # songs in one findSonicPath answer (its dynamic programme grows with the length)
MAX_QUERY_BYTES = 8192
MAX_BODY_BYTES = 64 * 1024
CALIBRATION_PAIRS = 200_000  # sampled track pairs (all pairs when a catalogue has fewer)
TOP = 0.999999  # the highest similarity of any song but the query song itself (after rounding to 6 decimals)

MISSING, NOT_FOUND, GENERIC = 10, 70, 0  # Subsonic error codes


class SubsonicFailure(Exception):
    """A request answered with ``status: failed`` and this Subsonic error ``code``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------------------------
# Similarity normalised per tables


class Calibration:
    """Cosine -> normalised similarity for one set of tables: the share of sampled pairs of distinct tracks whose
    cosine is lower, interpolated linearly between the sampled cosines (and from the highest one to 1), so it is
    monotone in the cosine, 0 at -1 and 1 only at 1. Every pair is taken when the catalogue has at most
    :data:`CALIBRATION_PAIRS` of them, else that many pairs drawn with a fixed seed (the same tables give the same
    numbers)."""

    def __init__(self, vectors: np.ndarray, pairs: int = CALIBRATION_PAIRS, seed: int = 0):
        n = len(vectors)
        with one_blas_thread():
            if n < 2:
                cosines = np.zeros(0, dtype=np.float32)
            elif n * (n - 1) // 2 <= pairs:
                upper = np.triu_indices(n, k=1)
                cosines = (vectors @ vectors.T)[upper]
            else:
                rng = np.random.default_rng(seed)
                a = rng.integers(0, n, pairs)
                b = rng.integers(0, n - 1, pairs)
                b += b >= a  # a pair of two distinct tracks
                cosines = np.concatenate([np.einsum("ij,ij->i", vectors[a[i:i + 50_000]], vectors[b[i:i + 50_000]])
                                          for i in range(0, pairs, 50_000)])
        self.cosines = np.sort(np.clip(cosines.astype(np.float64), -1.0, 1.0))
        m = len(self.cosines)
        self._x = np.concatenate([[-1.0], self.cosines, [1.0]])
        self._y = np.concatenate([[0.0], np.arange(1, m + 1) / (m + 1), [1.0]])

    def __call__(self, cosines: np.ndarray) -> np.ndarray:
        """[shape=(k,)] the similarity of each cosine, in [0, 1]."""
        return np.interp(np.clip(np.asarray(cosines, dtype=np.float64), -1.0, 1.0), self._x, self._y)


_calibrations: dict[int, tuple[weakref.ref, Calibration]] = {}
_calibration_lock = threading.Lock()


def calibration(tables: Tables) -> Calibration:
    """The :class:`Calibration` of ``tables``, made on first use and kept while the tables are loaded."""
    with _calibration_lock:
        kept = _calibrations.get(id(tables))
        if kept is not None and kept[0]() is tables:
            return kept[1]
        made = Calibration(tables.vectors)
        for key in [k for k, (ref, _) in _calibrations.items() if ref() is None]:
            del _calibrations[key]
        _calibrations[id(tables)] = (weakref.ref(tables), made)
        return made


def similarities(tables: Tables, origin: int, track_ids: list[int]) -> list[float]:
    """The normalised similarity of each of ``track_ids`` to ``origin``: 1.0 for ``origin`` itself, at most
    :data:`TOP` for any other track."""
    if not track_ids:
        return []
    rows = tables.rows_of(np.asarray(track_ids, dtype=np.int64))
    cosines = tables.vectors[rows] @ tables.vectors[tables.row(origin)]
    values = calibration(tables)(cosines)
    return [1.0 if t == origin else min(round(float(v), 6), TOP) for t, v in zip(track_ids, values)]


# ---------------------------------------------------------------------------------------------------------------
# Answers


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def child(snapshot: Any, track_id: int) -> dict[str, Any]:
    """A song as a Subsonic ``Child``: ``id``, ``isDir``, ``title`` and what the tables hold of it."""
    tables: Tables = snapshot.tables
    row = tables.row(track_id)

    def value(name: str) -> Any:
        v = tables.column(name)[row]
        return None if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)) else v

    path = value("path")
    relative = snapshot.finder.relative_path(track_id)
    suffix = PurePosixPath(str(path)).suffix.lstrip(".").lower() if path else ""
    seconds = value("length_s") or value("duration_s")
    entry = {"id": str(int(track_id)), "isDir": False,
             "title": _str(value("title")) or (PurePosixPath(str(path)).stem if path else str(int(track_id))),
             "album": _str(value("album")), "artist": _str(value("artist")), "genre": _str(value("genre")),
             "track": None if value("track_number") is None else int(value("track_number")),
             "duration": None if seconds is None else int(round(float(seconds))),
             "path": relative, "suffix": suffix or None,
             "contentType": mimetypes.guess_type(f"x.{suffix}")[0] if suffix else None,
             "isVideo": False, "type": "music", "mediaType": "song",
             "musicBrainzId": _str(value("musicbrainz_recording_id"))}
    return {k: v for k, v in entry.items() if v is not None}


def _matches(snapshot: Any, origin: int, track_ids: list[int]) -> dict[str, Any]:
    scores = similarities(snapshot.tables, origin, track_ids)
    return {"sonicMatch": [{"entry": child(snapshot, t), "similarity": s} for t, s in zip(track_ids, scores)]}


def _count(params: dict[str, str], default: int, minimum: int, maximum: int) -> int:
    text = params.get("count", "").strip()
    if not text:
        return default
    try:
        count = int(text)
    except ValueError:
        raise SubsonicFailure(GENERIC, f"parameter 'count' must be an integer, got {text[:40]!r}") from None
    if count < minimum:
        raise SubsonicFailure(GENERIC, f"parameter 'count' must be {minimum} or more, got {count}")
    return min(count, maximum)


def _song(snapshot: Any, params: dict[str, str], name: str) -> int:
    text = params.get(name, "").strip()
    if not text:
        raise SubsonicFailure(MISSING, f"missing parameter {name!r}: the id of a song")
    return snapshot.finder.find(text)


def sonic_similar_tracks(snapshot: Any, params: dict[str, str]) -> dict[str, Any]:
    """``getSonicSimilarTracks``: up to ``count`` (default 10) songs nearest to ``id``, most similar first, the
    song itself left out (the stored neighbour lists, as ``wavelist radio``)."""
    from playlists.radio import radio

    seed = _song(snapshot, params, "id")
    count = min(_count(params, 10, 0, MAX_SIMILAR), len(snapshot.tables) - 1)
    entries = radio(snapshot.tables, seed, count) if count > 0 else []
    scores = similarities(snapshot.tables, seed, [e.track_id for e in entries])
    order = sorted(range(len(entries)), key=lambda i: -scores[i])  # stable: ties keep radio's order
    return _matches(snapshot, seed, [entries[i].track_id for i in order])


def sonic_path(snapshot: Any, params: dict[str, str]) -> dict[str, Any]:
    """``findSonicPath``: at most ``count`` (default 25) songs from ``startSongId`` to ``endSongId``, both
    included, no song twice (``wavelist journey``); each song's similarity is to the start song."""
    from playlists.journey import journey_via

    start, end = _song(snapshot, params, "startSongId"), _song(snapshot, params, "endSongId")
    count = min(_count(params, 25, 1, MAX_PATH), len(snapshot.tables))
    if start == end:
        return _matches(snapshot, start, [start])
    if count < 2:
        raise SubsonicFailure(GENERIC, f"a path from one song to another needs count 2 or more, got {count}")
    return _matches(snapshot, start, [e.track_id for e in journey_via(snapshot.tables, [start, end], count)])


def _fixed(body: dict[str, Any]) -> Callable[[Any, dict[str, str]], dict[str, Any]]:
    return lambda snapshot, params: body


# method name -> (answer, whether it is cheap enough for the event loop)
METHODS: dict[str, tuple[Callable[[Any, dict[str, str]], dict[str, Any]], bool]] = {
    "ping": (_fixed({}), True),
    "getLicense": (_fixed({"license": {"valid": True}}), True),
    "getOpenSubsonicExtensions": (_fixed({"openSubsonicExtensions": [dict(e) for e in EXTENSIONS]}), True),
    "getSonicSimilarTracks": (sonic_similar_tracks, False),
    "findSonicPath": (sonic_path, False),
}


# ---------------------------------------------------------------------------------------------------------------
# The envelope, in JSON or XML

_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def envelope(body: dict[str, Any], failure: SubsonicFailure | None = None) -> dict[str, Any]:
    """A ``subsonic-response`` holding ``body``, or the ``failure``."""
    head = {"status": "failed" if failure else "ok", "version": API_VERSION, "type": "wavelist",
            "serverVersion": wavelist.__version__, "openSubsonic": True}
    if failure:
        return {**head, "error": {"code": failure.code, "message": " ".join(str(failure).split())}}
    return {**head, **body}


def _clean(value: Any, pattern: re.Pattern) -> Any:
    if isinstance(value, str):
        return pattern.sub("\ufffd", value)
    if isinstance(value, dict):
        return {k: _clean(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, pattern) for v in value]
    return value


def _xml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _element(name: str, fields: dict[str, Any]) -> ET.Element:
    """Subsonic's XML form of an object: scalars as attributes, objects as child elements, arrays as repeated
    child elements (an array of scalars as elements holding text)."""
    element = ET.Element(name)
    for key, value in fields.items():
        if isinstance(value, dict):
            element.append(_element(key, value))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    element.append(_element(key, item))
                else:
                    ET.SubElement(element, key).text = _xml_value(item)
        else:
            element.set(key, _xml_value(value))
    return element


def render(response: dict[str, Any], fmt: str, status: int = 200) -> Response:
    """``response`` (a ``subsonic-response``'s fields) as JSON (``fmt == "json"``) or as XML."""
    if fmt == "json":
        body = json.dumps({"subsonic-response": _clean(response, _SURROGATES)}, ensure_ascii=False,
                          allow_nan=False, separators=(",", ":"))
        return Response(body, status_code=status, media_type="application/json")
    root = _element("subsonic-response", {"xmlns": XML_NAMESPACE, **_clean(response, _NOT_XML)})
    body = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")
    return Response(body, status_code=status, media_type="text/xml")


# ---------------------------------------------------------------------------------------------------------------
# Requests


async def _body_params(request: Request) -> list[tuple[str, str]]:
    """The form fields of a POST (``application/x-www-form-urlencoded``)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise SubsonicFailure(GENERIC, f"a POST must send its parameters as application/x-www-form-urlencoded, "
                                       f"not {kind[:60]}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise SubsonicFailure(GENERIC, f"the request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        return parse_qsl(b"".join(chunks).decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise SubsonicFailure(GENERIC, "the request body is not UTF-8") from None


def routes(current: Callable[[], Any], limiter: anyio.CapacityLimiter) -> list[Route]:
    """The ``/rest/`` routes, answering from the snapshot ``current()`` returns (read once per request); work
    that grows with the catalogue runs on a worker thread under ``limiter``, never on the event loop."""

    async def handle(request: Request) -> Response:
        query = request.query_params
        fmt = "json" if query.get("f") == "json" else "xml"
        try:
            if request.method not in ("GET", "HEAD", "POST"):
                return render(envelope({}, SubsonicFailure(GENERIC, f"{request.method} is not allowed; use GET or "
                                                                     "POST")), fmt, 405)
            if len(request.scope.get("query_string", b"")) > MAX_QUERY_BYTES:
                raise SubsonicFailure(GENERIC, f"the query string is longer than {MAX_QUERY_BYTES} bytes; POST the "
                                               "parameters as form data")
            params: dict[str, str] = {}
            pairs = list(query.multi_items())
            if request.method == "POST":
                pairs += await _body_params(request)
            for key, value in pairs:
                params.setdefault(key, value)  # the first of a repeated parameter
            fmt = "json" if params.get("f") == "json" else "xml"
            name = request.path_params["method"].removesuffix(".view")
            if name not in METHODS:
                raise SubsonicFailure(GENERIC, f"wavelist serve does not answer {name[:80]!r}; it answers "
                                               f"{', '.join(METHODS)}")
            answer, cheap = METHODS[name]
            snapshot = current()
            if cheap:
                body = answer(snapshot, params)
            else:
                body = await anyio.to_thread.run_sync(answer, snapshot, params, limiter=limiter)
            return render(envelope(body), fmt)
        except SubsonicFailure as failure:
            return render(envelope({}, failure), fmt)
        except UnknownTrack as error:
            return render(envelope({}, SubsonicFailure(NOT_FOUND, str(error))), fmt)
        except (UserError, ValueError, LookupError) as error:
            return render(envelope({}, SubsonicFailure(GENERIC, str(error))), fmt)
        except Exception:  # noqa: BLE001 (the traceback goes to the server's log, never to the client)
            log.exception("%s %s failed", request.method, request.url.path)
            failure = SubsonicFailure(GENERIC, "internal error; the server's log has the details")
            return render(envelope({}, failure), fmt)

    # every method reaches the handler, which answers any but GET and POST with a 405 in the envelope
    return [Route("/rest/{method}", handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])]


def openapi_paths() -> dict[str, Any]:
    """OpenAPI entries of the OpenSubsonic methods, for ``wavelist serve``'s own description."""
    count = {"name": "count", "in": "query", "required": False, "schema": {"type": "integer"}}
    song = lambda name, doc: {"name": name, "in": "query", "required": True, "description": doc,  # noqa: E731
                              "schema": {"type": "string"}}
    format_ = {"name": "f", "in": "query", "required": False, "description": "json or xml",
               "schema": {"type": "string", "default": "xml"}}
    answer = {"200": {"description": "a subsonic-response (failures too: status failed, error.code 10, 70 or 0)"}}
    described = {
        "ping": ("OpenSubsonic ping", []),
        "getLicense": ("OpenSubsonic getLicense (always valid)", []),
        "getOpenSubsonicExtensions": ("The OpenSubsonic extensions answered here: sonicSimilarity, formPost", []),
        "getSonicSimilarTracks": ("OpenSubsonic sonicSimilarity: the songs that sound like one song",
                                  [song("id", "a song id"), {**count, "schema": {"type": "integer", "default": 10,
                                                                                  "minimum": 0}}]),
        "findSonicPath": ("OpenSubsonic sonicSimilarity: a path of songs from one song to another, both included",
                          [song("startSongId", "the first song"), song("endSongId", "the last song"),
                           {**count, "schema": {"type": "integer", "default": 25, "minimum": 1}}]),
    }
    paths = {}
    for name, (summary, params) in described.items():
        operation = {"summary": summary + " (also at .view; POST takes form data)", "tags": ["OpenSubsonic"],
                     "parameters": [*params, format_], "responses": answer}
        paths[f"/rest/{name}"] = {"get": operation, "post": operation}
    return paths

