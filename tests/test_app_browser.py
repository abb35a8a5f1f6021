"""The Streamlit app served for real and rendered by headless Chromium (Debian's ``chromium`` package): a
screenshot must show the 3-D map's genre colours and the playlist drawn on it, and the page the playlist table.

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


@pytest.fixture
def server(tmp_path):
    """The app on a free port, over synthetic tables; killed at teardown."""
    from playlists.synthetic import write_synthetic_tables

    tables = write_synthetic_tables(tmp_path / "tables", 300, audio=True)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true", f"--server.port={port}",
         "--server.address=127.0.0.1", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
        env={**os.environ, "WAVELIST_TABLES": str(tables)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
