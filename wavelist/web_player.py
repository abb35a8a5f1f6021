"""The app's playlist player: one HTML5 audio element that plays a playlist through, and the ``/audio/ID`` route
that gives it each track's file.

Why a route: the browser needs a URL per track. Inlining the audio (base64) makes a page of hundreds of MB;
Streamlit's media file manager (what ``st.audio`` uses) reads every whole file into the server's memory for
each session and rerun, through a private API; its static serving reaches only a ``static/`` folder beside the
script. The route streams the file itself (with ranges, so the browser can seek), from the same address and
port as the page, so ``wavelist app --address --port`` (or a proxy in front) needs nothing more. It serves only
the audio of tracks in the tables, chosen by id (a client never names a path), and only while the track's path
lies in the music folder and leads to the file ingest read (:meth:`playlists.service.TrackFinder.audio_file`);
everything else under ``/audio/`` is a 404.
"""
from __future__ import annotations

import functools
import mimetypes
import os
import threading

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from playlists import Tables, load_tables
from playlists.service import TrackFinder
from playlists.text import for_html

TABLES_VARIABLE = "WAVELIST_TABLES"
# Every address under /audio/ is this route's: one that is not a track id is a 404 here, never the app's page.
AUDIO_PATH = "/audio/{name:path}"
_loading = threading.Lock()


@functools.cache
def _finder(folder: str) -> TrackFinder:
    return TrackFinder(load_tables(folder))


def shared_finder(folder: str) -> TrackFinder:
    """The tables of ``folder`` and their track finder, loaded once per process: the page script and the audio
    route share them."""
    with _loading:
        return _finder(folder)


def shared_tables(folder: str) -> Tables:
    """The tables of ``folder``, loaded once per process (see :func:`shared_finder`)."""
    return shared_finder(folder).tables


def audio_url(track_id: int) -> str:
    """The URL of a track's audio on the app's own server."""
    return f"/audio/{int(track_id)}"


def local_audio(tables: Tables, track_id: int) -> str | None:
    """The file the app may play for ``track_id``, else None (see
    :meth:`playlists.service.TrackFinder.audio_file`)."""
    return shared_finder(str(tables.folder)).audio_file(track_id)


def track_id_of(name: str) -> int | None:
    """The track id that the last part of an ``/audio/`` address names: 1 to 19 ASCII digits within 64 bits, or
    None (a sign, a suffix, more digits)."""
    if not (name.isascii() and name.isdigit() and len(name) <= 19) or int(name) >= 2**63:
        return None
    return int(name)


async def audio(request: Request) -> Response:
    """``GET /audio/ID``: the audio file of track ID (404 for anything else: no such track, no file that may be
    served, an address that is not an id)."""
    folder = os.environ.get(TABLES_VARIABLE)
    track_id = track_id_of(request.path_params["name"])
    if not folder or track_id is None:
        return PlainTextResponse("no such track", 404)
    finder = await run_in_threadpool(shared_finder, folder)
    try:
        path = await run_in_threadpool(finder.audio_file, track_id)
    except LookupError:
        path = None
    if path is None:
        return PlainTextResponse("no audio file for this track", 404)
    return FileResponse(path, media_type=mimetypes.guess_type(path)[0] or "application/octet-stream",
                        headers={"Cache-Control": "private, max-age=3600"})


AUDIO_ROUTE = Route(AUDIO_PATH, audio, methods=["GET", "HEAD"])

_STYLE = """
body { font-family: "Source Sans Pro", sans-serif; margin: 0; color: #31333f; }
.bar { display: flex; gap: .5rem; align-items: center; }
audio { flex: 1; }
button { font: inherit; padding: .3rem .8rem; border: 1px solid #d0d0d8; border-radius: .4rem; background: #fff; }
#now { margin: .4rem 0; font-weight: 600; }
ol { max-height: 16rem; overflow-y: auto; margin: 0; padding-left: 2.5rem; position: relative; }
li { padding: .15rem .4rem; cursor: pointer; border-radius: .3rem; }
li:hover { background: #f0f2f6; }
li.current { background: #ff4b4b; color: #fff; }
li.current::marker { color: #31333f; font-weight: 600; }
"""
_SCRIPT = """
const audio = document.getElementById("audio");
const list = document.getElementById("tracks");
const items = [...list.querySelectorAll("li")];
let current = 0, wanted = false;  // wanted: the listener asked for sound (a track that fails is skipped)
function reveal(item) {  // scrolls the list only: scrollIntoView would also scroll the app's page
  if (item.offsetTop < list.scrollTop) list.scrollTop = item.offsetTop;
  const below = item.offsetTop + item.offsetHeight - list.clientHeight;
  if (below > list.scrollTop) list.scrollTop = below;
}
function choose(index, start) {
  if (index < 0 || index >= items.length) return;
  items[current].classList.remove("current");
  items[current].removeAttribute("aria-current");
  current = index;
  const item = items[current];
  item.classList.add("current");
  item.setAttribute("aria-current", "true");
  reveal(item);
  document.getElementById("now").textContent = item.textContent;
  document.body.dataset.current = String(current);
  audio.src = item.dataset.src;
  wanted = start;
  if (start) audio.play().catch(() => {});
}
audio.addEventListener("ended", () => choose(current + 1, true));
audio.addEventListener("error", () => { if (wanted) choose(current + 1, true); });
document.getElementById("previous").addEventListener("click", () => choose(current - 1, true));
document.getElementById("next").addEventListener("click", () => choose(current + 1, true));
items.forEach((item, index) => item.addEventListener("click", () => choose(index, true)));
if (items.length) choose(0, false);
"""


def player_html(tracks: list[tuple[int, str]]) -> str:
    """A page with one player for ``tracks`` (``(track_id, label)`` pairs, in order): it plays them through
    (the next starts when one ends), has previous and next buttons, and highlights the current track in the
    list (``li.current``); a click on a track plays it. Labels are escaped here."""
    rows = "\n".join(f'<li data-src="{audio_url(track_id)}">{for_html(text)}</li>' for track_id, text in tracks)
    return (f"<!doctype html><html><head><meta charset='utf-8'><style>{_STYLE}</style></head><body>"
            f"<div class='bar'><button id='previous' title='previous track'>&#9198; Previous</button>"
            f"<audio id='audio' controls preload='none'></audio>"
            f"<button id='next' title='next track'>Next &#9197;</button></div>"
            f"<div id='now'></div><ol id='tracks'>\n{rows}\n</ol><script>{_SCRIPT}</script></body></html>")
