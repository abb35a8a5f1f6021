"""Regenerate the docs' pictures of the demo catalogue (``make demo`` writes ``demo_out/``):

    python docs/screenshots.py --demo demo_out

- ``docs/app.png``: ``wavelist app`` in headless Chromium, a track's radio: the playlist and its player, on
  the second track;
- ``docs/map.png``: the page ``wavelist map --journey`` writes, a journey from the first track to the farthest;
- ``docs/mpd.txt``: ``wavelist mpd radio`` against a real MPD (null output) playing a demo song, and the queue
  it leaves (when Debian's ``mpd`` is installed); docs/mpd.md's copy of it is rewritten too.

PNG files are cut to a 256-colour palette, so each stays well under 300 KB.
"""
from __future__ import annotations

import argparse
import base64
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages and tests' helpers

from tests.programs import PLAYER, PLAYER_STATE, READY, chromium, mpd_server, wait_for, wavelist_app  # noqa: E402

DOCS = ROOT / "docs"
WIDTH = 1280
README_MPD = "against a real MPD (`docs/mpd.txt`):\n\n```text\n"  # docs/mpd.md's copy of the transcript follows


def save_png(data: str, path: Path) -> Path:
    """A base64 PNG from DevTools, saved with a 256-colour palette."""
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {image.width} x {image.height}, {path.stat().st_size // 1024} KB")
    return path


def far_pair(tables_dir: Path) -> tuple[int, int]:
    """The demo's journey: the first track and the one farthest from it."""
    from playlists import load_tables

    tables = load_tables(tables_dir)
    seed = int(tables.ids[0])
    return seed, int(tables.ids[int((tables.vectors @ tables.vector(seed)).argmin())])


def app_png(tables_dir: Path, seed: int, scratch: Path) -> Path:
    """The app's radio of ``seed``: the playlist table and the player, on its second track."""
    with wavelist_app(tables_dir) as url, chromium(scratch / "chromium", WIDTH, 3200) as browser:
        browser.call("Page.navigate", url=f"{url}/?q={seed}")
        wait_for(lambda: browser.evaluate(READY) and browser.evaluate(PLAYER_STATE), "the app to draw", 180)
        browser.evaluate(f"{PLAYER}.contentDocument.getElementById('next').click()")  # plays the second track
        wait_for(lambda: browser.evaluate(PLAYER_STATE)["playing"], "the second track to play", 60, every_s=0.2)
        time.sleep(3)  # a few seconds into it
        browser.evaluate(f"{PLAYER}.contentDocument.getElementById('audio').pause()")
        box = browser.evaluate(f"""(() => {{
          const top = document.querySelector('[data-testid="stTable"]').getBoundingClientRect().top;
          const bottom = {PLAYER}.getBoundingClientRect().bottom;
          return {{top, bottom}};
        }})()""")
        clip = {"x": 0, "y": box["top"] - 16, "width": WIDTH, "height": box["bottom"] - box["top"] + 32, "scale": 1}
        return save_png(browser.call("Page.captureScreenshot", format="png", clip=clip)["data"], DOCS / "app.png")


def map_png(tables_dir: Path, seed: int, far: int, scratch: Path) -> Path:
    """``wavelist map --journey seed far`` as Chromium draws it."""
    page = scratch / "map.html"
    subprocess.run([sys.executable, "-m", "wavelist.cli", "map", "--tables", str(tables_dir), "--journey", str(seed),
                    str(far), "-n", "12", "--out", str(page)], cwd=ROOT, check=True, capture_output=True)
    with chromium(scratch / "chromium-map", WIDTH, 800) as browser:
        browser.call("Page.navigate", url=page.as_uri())
        wait_for(lambda: browser.evaluate("!!document.querySelector('.js-plotly-plot .gl-container canvas')"),
                 "the map to draw", 120)
        time.sleep(2)  # WebGL draws the scene after the canvas appears
        return save_png(browser.call("Page.captureScreenshot", format="png")["data"], DOCS / "map.png")


def mpd_txt(demo: Path, tables_dir: Path, seed: int, scratch: Path) -> Path | None:
    """A transcript: MPD plays a demo song, ``wavelist mpd radio`` queues its radio, the queue as MPD lists it."""
    if shutil.which("mpd") is None:
        print("mpd is not installed: docs/mpd.txt left as it is")
        return None
    from playlists import load_tables
    from playlists.service import TrackFinder
    from wavelist import player

    music = demo / "catalogue" / "fma_small"
    finder = TrackFinder(load_tables(tables_dir), music)
    song = finder.relative_path(seed)
    with mpd_server(music, scratch / "mpd", songs=len(list(music.rglob("*.mp3")))) as port:
        client = player.connect("127.0.0.1", port)
        client.add(song)
        client.play(0)
        shown = "wavelist mpd radio --tables demo_out/tables --music-dir demo_out/catalogue/fma_small -n 8"
        run = subprocess.run([sys.executable, "-m", "wavelist.cli", "mpd", "radio", "--tables", str(tables_dir),
                              "--music-dir", str(music), "-n", "8", "--host", "127.0.0.1", "--port", str(port)],
                             cwd=ROOT, capture_output=True, text=True, check=True)
        files = [s["file"] for s in client.playlistinfo()]
        client.stop()
        client.disconnect()
    tables = finder.tables
    queue = [f"{k:2d}. {file}   {tables.describe([finder.find(file)]).split(' ', 1)[1]}"
             for k, file in enumerate(files, start=1)]  # artist - title from the catalogue (the MP3s have no tags)
    text = "\n".join([f"# MPD plays {song} (mpc add {song} && mpc play)", f"$ {shown}",
                      run.stdout.strip().replace(f"127.0.0.1:{port}", "localhost:6600"),
                      "# MPD's queue now (mpc playlist), with each song's artist - title from the catalogue:", *queue])
    path = DOCS / "mpd.txt"
    path.write_text(text.replace(str(demo), "demo_out") + "\n")
    readme = DOCS / "mpd.md"
    before, marker, after = readme.read_text(encoding="utf-8").partition(README_MPD)
    if marker:  # docs/mpd.md shows the transcript as text: the same text
        after = after.partition("```\n")[2]
        readme.write_text(f"{before}{marker}{path.read_text()}```\n{after}", encoding="utf-8")
    print(f"{path}: {len(queue)} songs queued (and docs/mpd.md)")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="demo_out", help="output folder of wavelist demo (default demo_out)")
    args = parser.parse_args(argv)
    demo = Path(args.demo).resolve()
    tables_dir = demo / "tables"
    if not (tables_dir / "summary.json").is_file():
        print(f"screenshots: error: {tables_dir} is not a tables folder: run make demo first", file=sys.stderr)
        return 2
    seed, far = far_pair(tables_dir)
    with tempfile.TemporaryDirectory() as scratch:
        app_png(tables_dir, seed, Path(scratch))
        map_png(tables_dir, seed, far, Path(scratch))
        mpd_txt(demo, tables_dir, seed, Path(scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
