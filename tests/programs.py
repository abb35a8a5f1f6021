"""The real programs that the tests and ``docs/screenshots.py`` drive: headless Chromium (Debian's ``chromium``)
over the DevTools protocol, ``wavelist app`` served for real, and MPD (Debian's ``mpd``) with a null audio
output, and supysonic (a Subsonic server). Waits poll for what a program shows instead of guessing a delay."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
READY = """(() => {
  const plot = document.querySelector('.js-plotly-plot .gl-container canvas');
  const table = document.querySelector('[data-testid="stTable"] table');
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  return !!plot && !!table && !running;
})()"""
PLAYER = "document.querySelector('iframe[srcdoc*=\"/audio/\"]')"  # the app's playlist player (wavelist/web_player.py)
PLAYER_STATE = f"""(() => {{
  const frame = {PLAYER};
  const page = frame && frame.contentDocument;
  const audio = page && page.getElementById('audio');
  if (!audio || !page.body.dataset.current) return null;
  const items = [...page.querySelectorAll('#tracks li')];
  return {{index: Number(page.body.dataset.current), source: audio.currentSrc, paused: audio.paused,
           playing: !audio.paused && audio.currentTime > 0, sources: items.map(li => li.dataset.src),
           highlighted: items.findIndex(li => li.classList.contains('current')),
           highlightedCount: items.filter(li => li.classList.contains('current')).length}};
}})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """End ``process``: asked first, killed after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(check: Callable[[], Any], what: str, seconds: float = 90.0, every_s: float = 0.5) -> Any:
    """Poll ``check()`` until it returns something true; raise :class:`TimeoutError` naming ``what`` after
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, ValueError):  # not listening yet, or an answer not complete yet
            value = None
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"{what} did not happen within {seconds:.0f} s")


class DevTools:
    """Just enough of the Chrome DevTools protocol: call a method, get its result."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.socket = connect(ws_url, max_size=64 * 2**20, open_timeout=10)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise awaited), run as if from a click."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True,
                         userGesture=True)["result"].get("value")


@contextlib.contextmanager
def chromium(profile: Path, width: int = 1280, height: int = 1700) -> Iterator[DevTools]:
    """Headless Chromium with a ``width`` x ``height`` window and its profile in ``profile``; audio plays
    without a click (and is muted). Killed on exit."""
    if CHROMIUM is None:
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
    port = free_port()
    process = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-dev-shm-usage", f"--remote-debugging-port={port}",
         "--use-angle=swiftshader", "--enable-unsafe-swiftshader", f"--window-size={width},{height}",
         "--hide-scrollbars", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def page():
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2).read())
            return next((t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"), None)

        tools = DevTools(wait_for(page, "chromium start"))
        try:
            yield tools
        finally:
            tools.socket.close()
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def wavelist_app(tables: Path) -> Iterator[str]:
    """``wavelist app`` over ``tables`` on a free loopback port; yields its URL once healthy. Killed on exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "wavelist.cli", "app", "--tables", str(tables), "--address", "127.0.0.1",
         "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok", "app start")
        yield url
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def mpd_server(music: Path, state: Path, songs: int) -> Iterator[int]:
    """MPD serving the folder ``music`` (its state, log and playlists in ``state``), its database updated until
    it holds ``songs`` songs; yields its port. Stopped on exit (only the MPD started here)."""
    from wavelist import player

    (state / "playlists").mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = state / "mpd.conf"
    config.write_text(
        f'music_directory "{music}"\n'
        f'db_file "{state / "database"}"\n'
        f'state_file "{state / "state"}"\n'
        f'log_file "{state / "log"}"\n'
        f'playlist_directory "{state / "playlists"}"\n'
        'bind_to_address "127.0.0.1"\n'
        f'port "{port}"\n'
        'zeroconf_enabled "no"\n'
        'audio_output {\n    type "null"\n    name "null"\n}\n')
    process = subprocess.Popen(["mpd", "--no-daemon", "--stderr", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        client = wait_for(lambda: player.connect("127.0.0.1", port, timeout=5), "MPD start", 30, every_s=0.1)
        client.update()
        wait_for(lambda: "updating_db" not in client.status() and len(client.listall()) >= songs,
                 "MPD's database update", 30, every_s=0.1)
        client.disconnect()
        yield port
    finally:
        stop(process)


@contextlib.contextmanager
def supysonic_server(music: Path, state: Path, users: dict[str, str]) -> Iterator[str]:
    """supysonic (a Subsonic server in Python) with ``music`` as its one folder, scanned, and ``users`` (name:
    password); its config (``supysonic.conf``, read from its working folder), SQLite database, cache and home are
    all in ``state``. Yields its base URL once it answers; stopped on exit (by its PID)."""
    state.mkdir(parents=True, exist_ok=True)
    (state / "supysonic.conf").write_text(
        f"[base]\ndatabase_uri = sqlite:///{state / 'supysonic.db'}\n"
        f"[webapp]\ncache_dir = {state / 'cache'}\nmount_webui = no\nlog_level = WARNING\n"
        f"[daemon]\nsocket = {state / 'daemon.sock'}\nrun_watcher = no\n")
    env = {**os.environ, "HOME": str(state), "TMPDIR": str(state)}  # no ~/.supysonic of the person running tests

    def cli(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "supysonic.cli", *args], cwd=state, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    for name, password in users.items():
        cli("user", "add", name, "-p", password)
    cli("folder", "add", "music", str(music))
    cli("folder", "scan", "music")
    port = free_port()
    log = (state / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "supysonic.server", "-S", "waitress", "-h", "127.0.0.1",
                                "-p", str(port)], cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    user, password = next(iter(users.items()))
    ping = f"{url}/rest/ping.view?" + urllib.parse.urlencode({"u": user, "p": password, "c": "tests", "v": "1.12.0",
                                                              "f": "json"})
    try:
        wait_for(lambda: process.poll() is not None or b'"ok"' in urllib.request.urlopen(ping, timeout=2).read(),
                 "supysonic start", 60, every_s=0.1)
        if process.poll() is not None:
            raise RuntimeError(f"supysonic did not start: {(state / 'server.log').read_text()}")
        yield url
    finally:
        stop(process)
        log.close()
