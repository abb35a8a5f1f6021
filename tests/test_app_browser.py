"""The Streamlit app served for real (``wavelist app``) and rendered by headless Chromium (Debian's ``chromium``
package): a screenshot must show the 3-D map's genre colours and the playlist drawn on it, and the page the
playlist table; the playlist player must play a playlist through, track after track, and step with its buttons.

Chromium is driven over the DevTools protocol (``websockets``, which Streamlit already installs), so the test
waits until the page has drawn instead of guessing a delay.
"""
from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import numpy as np
import pytest

from tests.programs import CHROMIUM, PLAYER, PLAYER_STATE, READY, chromium, wait_for, wavelist_app

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; "
                                                         ".ci/run installs it when run as root)")


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
    """``wavelist app`` on a free port, over synthetic tables with short audio files."""
    from playlists.synthetic import write_synthetic_tables

    tables = write_synthetic_tables(tmp_path / "tables", 300, audio=True)
    write_short_tracks(tables)
    with wavelist_app(tables) as url:
        yield url


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "chromium") as tools:
        yield tools


def colour_pixels(image: np.ndarray, hex_colour: str, tolerance: int = 12) -> int:
    rgb = np.array([int(hex_colour[i: i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[..., :3].astype(int) - rgb).max(axis=-1) <= tolerance).sum())


def test_map_and_playlist_render_in_chromium(server, browser, tmp_path):
    from PIL import Image

    started = time.monotonic()
    browser.call("Page.navigate", url=f"{server}/?q=song+1042")

    wait_for(lambda: browser.evaluate(READY), "the map and the playlist table to render")
    print(f"page ready after {time.monotonic() - started:.1f} s")
    time.sleep(1)  # WebGL draws the scene after the canvas appears
    shot = browser.call("Page.captureScreenshot", format="png")["data"]
    print(f"screenshot after {time.monotonic() - started:.1f} s")
    (tmp_path / "app.png").write_bytes(base64.b64decode(shot))
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot))).convert("RGB"))
    text = browser.evaluate("document.body.innerText")

    assert "WebGL is not supported" not in text
    assert "Song 1042 - Artist" in text and "Download M3U8" in text
    assert text.count("Song 10") >= 10  # the radio table lists its tracks
    from playlists.mapview import GENRE_COLOURS

    genre_colours = [c for c in GENRE_COLOURS[:8] if colour_pixels(image, c) >= 30]
    assert len(genre_colours) >= 6, f"genre colours on the map: {genre_colours} (screenshot {tmp_path / 'app.png'})"
    assert colour_pixels(image, "#000000", tolerance=20) >= 300, "no black playlist path on the map"
    assert colour_pixels(image, "#ff0000", tolerance=30) >= 30, "no red marker for the selected track"


def test_player_plays_the_playlist_through_and_steps(server, browser):
    browser.call("Page.navigate", url=f"{server}/?q=song+1042")
    state = wait_for(lambda: browser.evaluate(PLAYER_STATE), "the playlist player to appear")
    sources = state["sources"]
    assert len(sources) == 20 and sources[0] == "/audio/1042" and len(set(sources)) == 20
    assert state["index"] == 0 and state["highlighted"] == 0 and not state["playing"]  # nothing plays unasked

    # The states when the first and then the second track start, caught by the audio's "playing" events (polls
    # could miss a 1.5 s track on a busy machine); the second must start by itself when the first ends.
    first = browser.evaluate(f"""(async () => {{
      const audio = {PLAYER}.contentDocument.getElementById('audio');
      const started = new Promise(resolve => audio.addEventListener('playing', () => resolve({PLAYER_STATE}),
                                                                    {{once: true}}));
      window.secondStarted = new Promise(resolve => audio.addEventListener('playing', function second() {{
        const state = {PLAYER_STATE};
        if (state.index !== 1) return;
        audio.removeEventListener('playing', second);
        audio.pause();  // held there for the buttons below
        resolve(state);
      }}));
      audio.play();  // play, pressed once
      return await started;
    }})()""")
    assert first["index"] == 0 and first["source"].endswith(sources[0]) and not first["paused"]
    second = browser.evaluate("Promise.race([window.secondStarted, new Promise(r => setTimeout(r, 30000, null))])")
    assert second, "the second track did not start by itself within 30 s of the first"
    assert second["source"].endswith(sources[1]) and not second["paused"]
    assert second["highlighted"] == 1 and second["highlightedCount"] == 1

    def press(button: str):
        """Press ``button``; the state once the track it chose plays (then paused, so that it stays there)."""
        return browser.evaluate(f"""(async () => {{
          const audio = {PLAYER}.contentDocument.getElementById('audio');
          const started = new Promise(resolve => audio.addEventListener('playing', resolve, {{once: true}}));
          {PLAYER}.contentDocument.getElementById('{button}').click();
          await started;
          const state = {PLAYER_STATE};
          audio.pause();
          return state;
        }})()""")

    after_next = press("next")
    assert after_next["index"] == 2 and after_next["highlighted"] == 2 and after_next["source"].endswith(sources[2])
    assert not after_next["paused"]
    after_previous = press("previous")
    assert after_previous["index"] == 1 and after_previous["highlighted"] == 1
    assert after_previous["source"].endswith(sources[1]) and not after_previous["paused"]

    far_down = browser.evaluate(f"""(() => {{
      const scrolled = () => [document.scrollingElement, ...document.querySelectorAll('*')]
        .reduce((sum, element) => sum + element.scrollTop, 0);
      const before = scrolled();
      const page = {PLAYER}.contentDocument, list = page.getElementById('tracks');
      const item = list.querySelectorAll('li')[17];
      item.click();
      const shown = item.offsetTop >= list.scrollTop
        && item.offsetTop + item.offsetHeight <= list.scrollTop + list.clientHeight;
      return {{index: Number(page.body.dataset.current), shown, listScrolled: list.scrollTop > 0,
               pageMoved: scrolled() - before}};
    }})()""")
    assert far_down == {"index": 17, "shown": True, "listScrolled": True, "pageMoved": 0}  # the list scrolls, not the page
