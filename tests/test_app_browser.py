"""The Streamlit app served for real (``wavelist app``) and rendered by headless Chromium (Debian's ``chromium``
package): a screenshot must show the 3-D map's genre colours and the playlist drawn on it, and the page the
playlist table; the playlist player must play a playlist through, track after track, and step with its buttons.

Chromium is driven over the DevTools protocol (``websockets``, which Streamlit already installs), so the test
waits until the page has drawn instead of guessing a delay.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; "
                                                         ".ci/run installs it when run as root)")
APP = Path(__file__).resolve().parents[1] / "wavelist" / "app.py"
READY = """(() => {
  const plot = document.querySelector('.js-plotly-plot .gl-container canvas');
  const table = document.querySelector('[data-testid="stTable"] table');
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  return !!plot && !!table && !running;
})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, seconds: float = 90.0):
    """Poll ``check()`` until it returns something true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {seconds:.0f} s")


TRACK_SECONDS = 1.5  # each track's audio: the player's move to the next track is seen within a track's time


def write_short_tracks(tables: Path) -> None:
    """Every track's audio file as a tone of :data:`TRACK_SECONDS` (a pitch per track)."""
    import pyarrow.parquet as pq
    import soundfile

    sr = 8000
    t = np.arange(int(TRACK_SECONDS * sr)) / sr
    for track_id, path in zip(*pq.read_table(tables / "tracks.parquet", columns=["track_id", "path"]).to_pydict().values()):
        soundfile.write(path, 0.3 * np.sin(2 * np.pi * (200 + track_id % 300) * t), sr)


@pytest.fixture
def server(tmp_path):
    """``wavelist app`` on a free port, over synthetic tables with short audio files; killed at teardown."""
    from playlists.synthetic import write_synthetic_tables

    tables = write_synthetic_tables(tmp_path / "tables", 300, audio=True)
    write_short_tracks(tables)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "wavelist.cli", "app", "--tables", str(tables), "--address", "127.0.0.1",
         "--port", str(port)], cwd=APP.parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok", "app start")
        yield url
    finally:
        process.kill()
        process.wait()


class DevTools:
    """Just enough of the Chrome DevTools protocol: call a method, get its result."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.socket = connect(ws_url, max_size=64 * 2**20, open_timeout=10)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]


@pytest.fixture
def browser(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-dev-shm-usage", f"--remote-debugging-port={port}",
         "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--window-size=1280,1700", "--hide-scrollbars",
         "--autoplay-policy=no-user-gesture-required", "--mute-audio",
         f"--user-data-dir={tmp_path / 'chromium'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def page():
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2).read())
            return next((t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"), None)

        tools = DevTools(wait_for(page, "chromium start"))
        yield tools
        tools.socket.close()
    finally:
        process.kill()
        process.wait()


def colour_pixels(image: np.ndarray, hex_colour: str, tolerance: int = 12) -> int:
    rgb = np.array([int(hex_colour[i: i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[..., :3].astype(int) - rgb).max(axis=-1) <= tolerance).sum())


def test_map_and_playlist_render_in_chromium(server, browser, tmp_path):
    from PIL import Image

    started = time.monotonic()
    browser.call("Page.navigate", url=f"{server}/?q=song+1042")

    def ready():
        return browser.call("Runtime.evaluate", expression=READY, returnByValue=True)["result"].get("value")

    wait_for(ready, "the map and the playlist table to render")
    print(f"page ready after {time.monotonic() - started:.1f} s")
    time.sleep(1)  # WebGL draws the scene after the canvas appears
    shot = browser.call("Page.captureScreenshot", format="png")["data"]
    print(f"screenshot after {time.monotonic() - started:.1f} s")
    (tmp_path / "app.png").write_bytes(base64.b64decode(shot))
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot))).convert("RGB"))
    text = browser.call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)["result"]["value"]

    assert "WebGL is not supported" not in text
    assert "Song 1042 - Artist" in text and "Download M3U8" in text
    assert text.count("Song 10") >= 10  # the radio table lists its tracks
    from playlists.mapview import GENRE_COLOURS

    genre_colours = [c for c in GENRE_COLOURS[:8] if colour_pixels(image, c) >= 30]
    assert len(genre_colours) >= 6, f"genre colours on the map: {genre_colours} (screenshot {tmp_path / 'app.png'})"
    assert colour_pixels(image, "#000000", tolerance=20) >= 300, "no black playlist path on the map"
    assert colour_pixels(image, "#ff0000", tolerance=30) >= 30, "no red marker for the selected track"


PLAYER = "document.querySelector('iframe[srcdoc*=\"/audio/\"]')"
STATE = f"""(() => {{
  const frame = {PLAYER};
  const page = frame && frame.contentDocument;
  const audio = page && page.getElementById('audio');
  if (!audio || !page.body.dataset.current) return null;
  const current = [...page.querySelectorAll('#tracks li')].findIndex(li => li.classList.contains('current'));
  return {{index: Number(page.body.dataset.current), highlighted: current, source: audio.currentSrc,
           paused: audio.paused, playing: !audio.paused && audio.currentTime > 0,
           sources: [...page.querySelectorAll('#tracks li')].map(li => li.dataset.src),
           highlightedCount: page.querySelectorAll('#tracks li.current').length}};
}})()"""


def evaluate(browser, expression: str):
    return browser.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True,
                        userGesture=True)["result"].get("value")


def test_player_plays_the_playlist_through_and_steps(server, browser):
    browser.call("Page.navigate", url=f"{server}/?q=song+1042")
    state = wait_for(lambda: evaluate(browser, STATE), "the playlist player to appear")
    sources = state["sources"]
    assert len(sources) == 20 and sources[0] == "/audio/1042" and len(set(sources)) == 20
    assert state["index"] == 0 and state["highlighted"] == 0 and not state["playing"]  # nothing plays unasked

    evaluate(browser, f"{PLAYER}.contentDocument.getElementById('audio').play()")  # play, pressed once
    first = wait_for(lambda: (s := evaluate(browser, STATE)) and s["playing"] and s, "the first track to play", 20)
    assert first["index"] == 0 and first["source"].endswith(sources[0])

    def second_playing():
        s = evaluate(browser, STATE)
        return s if s["index"] == 1 and s["playing"] else None

    second = wait_for(second_playing, "the second track to start when the first ended", 3 * TRACK_SECONDS + 10)
    assert second["source"].endswith(sources[1]) and second["highlighted"] == 1 and second["highlightedCount"] == 1

    def press(button: str):
        """Pause, press ``button``, and give the state once the track it chose is playing."""
        return evaluate(browser, f"""(async () => {{
          const audio = {PLAYER}.contentDocument.getElementById('audio');
          audio.pause();
          const started = new Promise(resolve => audio.addEventListener('playing', resolve, {{once: true}}));
          {PLAYER}.contentDocument.getElementById('{button}').click();
          await started;
          return {STATE};
        }})()""")

    after_next = press("next")
    assert after_next["index"] == 2 and after_next["highlighted"] == 2 and after_next["source"].endswith(sources[2])
    assert not after_next["paused"]
    after_previous = press("previous")
    assert after_previous["index"] == 1 and after_previous["highlighted"] == 1
    assert after_previous["source"].endswith(sources[1]) and not after_previous["paused"]
