"""``wavelist serve`` for real: the server runs in its own process on a free loopback port and is asked over HTTP
(httpx), on synthetic tables; its answers are compared with the ``wavelist`` command's."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wavelist.cli import main

ROOT = Path(__file__).resolve().parents[1]
N_TRACKS = 400
NASTY_TITLE = 'A "title"\nwith </script>, \\ and \u00e9\u00df\u2603'  # text from files is data


def mbid(track_id: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wavelist-test/{track_id}"))


def write_tables(folder: Path, *, seed: int, model_id: str) -> Path:
    """Synthetic tables whose tracks.parquet also has a MusicBrainz recording id column."""
    from playlists.synthetic import write_synthetic_tables

    write_synthetic_tables(folder, N_TRACKS, seed=seed, model_id=model_id)
    tracks = pq.read_table(folder / "tracks.parquet")
    ids = tracks["track_id"].to_pylist()
    titles = [NASTY_TITLE if i == 1399 else t for i, t in zip(ids, tracks["title"].to_pylist())]
    tracks = tracks.set_column(tracks.schema.get_field_index("title"), "title", pa.array(titles))
    column = tracks.schema.get_field_index("musicbrainz_recording_id")
    pq.write_table(tracks.set_column(column, "musicbrainz_recording_id", pa.array([mbid(i) for i in ids])),
                   folder / "tracks.parquet")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``wavelist serve`` in a subprocess; its output goes to ``log``."""

    def __init__(self, tables: Path, log: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wavelist.cli", "serve", "--tables", str(tables), "--port", str(self.port), *extra],
            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.log.read_text()


@pytest.fixture(scope="module")
def tables_dir(tmp_path_factory) -> Path:
    return write_tables(tmp_path_factory.mktemp("serve") / "tables", seed=0, model_id="synthetic-a")


@pytest.fixture(scope="module")
def server(tables_dir, tmp_path_factory):
    server = Server(tables_dir, tmp_path_factory.mktemp("serve-log") / "server.log", "--watch-seconds", "0")
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def cli_json(capsys, *argv: str) -> list[dict]:
    """The command's JSON, its score column (named for the kind: to_seed, step, ...) named as the server does."""
    from playlists.output import SCORE_NAMES

    assert main([*argv, "--format", "json"]) == 0
    score = SCORE_NAMES[argv[0]]
    return [{("similarity" if k == score else k): v for k, v in row.items()}
            for row in json.loads(capsys.readouterr().out)]


def ok(client: httpx.Client, url: str, **kwargs) -> dict:
    response = client.get(url, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_health_names_the_tables(client, tables_dir):
    health = ok(client, "/health")
    assert health["status"] == "ok" and health["model_id"] == "synthetic-a" and health["tracks"] == N_TRACKS
    assert health["built_at"].startswith("20") and health["folder"] == str(tables_dir)
    assert health["music_folder"] == str(tables_dir / "audio")


def test_openapi_describes_every_endpoint(client):
    description = ok(client, "/openapi.json")
    assert description["openapi"].startswith("3.")
    assert {"/health", "/radio", "/like", "/journey", "/alchemy", "/profile", "/track", "/search", "/reload",
            "/rest/getSonicSimilarTracks", "/rest/findSonicPath"} <= set(description["paths"])
    names = {p["name"] for p in description["paths"]["/journey"]["get"]["parameters"]}
    assert names == {"from", "to", "via", "avoid", "n", "max_per_artist"}


def test_playlists_are_the_command_line_answers(client, tables_dir, capsys, tmp_path):
    t = str(tables_dir)
    cases = [
        ("/radio", {"seed": "Song 1010", "n": 6, "exclude_artist": "true", "variety": 0.3},
         ["radio", "--tables", t, "--seed", "Song 1010", "-n", "6", "--exclude-artist", "--variety", "0.3"]),
        ("/radio", {"seed": 1010, "n": 12, "max_per_artist": 1},
         ["radio", "--tables", t, "--seed", "1010", "-n", "12", "--max-per-artist", "1"]),
        ("/like", {"seeds": [1001, 1200], "n": 5}, ["like", "--tables", t, "--seeds", "1001", "1200", "-n", "5"]),
        ("/journey", {"via": [1000, 1200, 1399], "n": 10, "avoid": [1002], "max_per_artist": 2},
         ["journey", "--tables", t, "--via", "1000", "1200", "1399", "-n", "10", "--avoid", "1002",
          "--max-per-artist", "2"]),
        ("/alchemy", {"add": [1001, 1300], "subtract": [1301], "n": 5},
         ["alchemy", "--tables", t, "--add", "1001", "1300", "--subtract", "1301", "-n", "5"]),
    ]
    for path, params, argv in cases:
        answer = ok(client, path, params=params)
        assert answer["tracks"] == cli_json(capsys, *argv), path
        assert answer["kind"] == argv[0] and answer["tables"]["model_id"] == "synthetic-a"
    history = tmp_path / "played.txt"
    history.write_text("1001\n1002\n1003\n")
    want = cli_json(capsys, "profile", "--tables", t, "--history", str(history), "-n", "7", "--half-life", "2")
    assert ok(client, "/profile", params={"history": [1001, 1002, 1003], "n": 7, "half_life": 2})["tracks"] == want
    posted = client.post("/profile", params={"n": 7, "half_life": 2}, content=history.read_text())
    assert posted.status_code == 200 and posted.json()["tracks"] == want
    m3u = "#EXTM3U\n" + "".join(f"#EXTINF:-1,x\n{tables_dir}/audio/{i}.wav\n" for i in (1001, 1002)) + "1003.wav\n"
    assert ok_post(client, "/profile?n=7&half_life=2", m3u)["tracks"] == want
    outside = client.post("/profile", content="1001\n/etc/passwd\n")
    assert outside.status_code == 400 and "line 2: '/etc/passwd' is outside the music folder" in outside.json()["error"]


def ok_post(client: httpx.Client, url: str, body: str) -> dict:
    response = client.post(url, content=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_journey_reports_smoothness_and_runs_from_a_to_b(client):
    answer = ok(client, "/journey", params={"from": 1000, "to": 1399, "n": 8})
    ids = [row["track_id"] for row in answer["tracks"]]
    assert ids[0] == 1000 and ids[-1] == 1399 and len(set(ids)) == len(ids) == 8
    assert answer["smoothness"]["monotonic_fraction"] == 1.0


def test_track_by_id_path_mbid_or_title(client):
    by_id = ok(client, "/track", params={"id": 1042})["track"]
    assert by_id["title"] == "Song 1042" and by_id["relative_path"] == "1042.wav"
    for name in ("1042.wav", "./1042.wav", mbid(1042), mbid(1042).upper(), "Song 1042"):
        assert ok(client, "/track", params={"id": name})["track"] == by_id, name


def test_titles_are_data(client):
    assert ok(client, "/track", params={"id": 1399})["track"]["title"] == NASTY_TITLE
    assert "\\n" in client.get("/track", params={"id": 1399}).text  # encoded, not a raw line break


def test_search_by_words(client):
    found = ok(client, "/search", params={"q": "song 104", "limit": 5})["tracks"]
    assert [row["track_id"] for row in found] == [1040, 1041, 1042, 1043, 1044]


BAD = [
    ("/radio?seed=999999", 404, "track 999999 is not in"),
    ("/radio?seed=123456789012345678901234567890", 404, "track ids are 64-bit integers"),
    ("/radio?seed=Sonng%201001", 404, "'Sonng 1001' is neither a track id"),
    ("/radio", 400, "missing parameter 'seed'"),
    ("/radio?seed=1001&n=abc", 400, "parameter 'n' must be an integer, got 'abc'"),
    ("/radio?seed=1001&n=0", 400, "parameter 'n' must be between 1 and 500"),
    ("/radio?seed=1001&n=100000", 400, "parameter 'n' must be between 1 and 500"),
    ("/radio?seed=1001&variety=nan", 400, "parameter 'variety' must be a finite number"),
    ("/radio?seed=1001&variety=2", 400, "parameter 'variety' must be between 0 and 0.9"),
    ("/radio?seed=1001&exclude_artist=maybe", 400, "parameter 'exclude_artist' must be true or false"),
    ("/radio?seed=1001&seed=1002", 400, "parameter 'seed' is given 2 times"),
    ("/radio?seed=1001&colour=red", 400, "unknown parameter 'colour'"),
    ("/journey?from=1001&to=1001", 400, "stops must be different tracks"),
    ("/journey?via=1001&via=1200&via=1001", 400, "stops must be different tracks"),
    ("/journey?from=1001", 400, "a journey needs --from A --to B"),
    ("/journey?from=1001&to=1200&n=1", 400, "parameter 'n' must be between 2 and 200"),
    ("/alchemy?add=1001&subtract=1001", 400, "zero vector"),
    ("/track?id=../../etc/passwd", 400, "outside the music folder"),
    ("/track?id=/etc/passwd", 400, "outside the music folder"),
    ("/track?id=sub/../../x.wav", 400, "outside the music folder"),
    ("/track?id=nowhere/x.wav", 404, "is neither a track id"),
    ("/nothing", 404, "no endpoint '/nothing'"),
]


@pytest.mark.parametrize("url, status, message", BAD)
def test_bad_requests_are_4xx_naming_the_problem(client, url, status, message):
    response = client.get(url)
    assert response.status_code == status, response.text
    body = response.json()
    text = body["error"]
    assert message in text and "\n" not in text and "Traceback" not in text


def test_limits_on_request_size(client):
    assert client.get("/radio", params={"seed": "1" * 9000}).status_code == 414
    too_many = client.get("/like", params={"seeds": list(range(1000, 1101))})
    assert too_many.status_code == 400 and "at most 100" in too_many.json()["error"]
    big = client.post("/profile", content=b"1001\n" * 20000)
    assert big.status_code == 413 and "larger than 65536 bytes" in big.json()["error"]
    assert client.delete("/radio?seed=1001").status_code == 405
    assert client.post("/profile", content=b"\xff\xfe").status_code == 400


def test_serve_refuses_a_bad_folder_in_one_line(tmp_path, capsys):
    assert main(["serve", "--tables", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wavelist serve: error:") and "nowhere is not a folder" in err and "\n" not in err


def test_serve_on_a_busy_port_is_one_line(server, tables_dir, capsys):
    assert main(["serve", "--tables", str(tables_dir), "--port", str(server.port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"wavelist serve: error: cannot listen on 127.0.0.1:{server.port}: Address already in use"
    assert main(["serve", "--tables", str(tables_dir), "--port", "70000"]) == 2
    assert "--port must be between 0 and 65535" in capsys.readouterr().err


def test_accepted_connections_send_answers_at_once():
    """The listening socket names TCP, so asyncio (uvicorn's loop) sets TCP_NODELAY on each accepted connection:
    an answer written in two parts is not held back until the client acknowledges the first (a keep-alive
    client's delayed ACK made every answer after the first take 40 ms more, benchmarks/RESULTS.md issue 34)."""
    import asyncio

    from wavelist.serve import listen

    sock = listen("127.0.0.1", 0)
    sock.listen()

    async def accepted_nodelay() -> int:
        found = asyncio.get_running_loop().create_future()

        def on_connection(reader, writer) -> None:
            found.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(found, 10)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay())


def publish(staging: Path, out: Path) -> None:
    """As embed publishes a local TABLES folder: the old one renamed aside, the new one renamed into place."""
    old = out.with_name(f".{out.name}.old")
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old)


def test_reload_swaps_whole_tables_under_concurrent_requests(tmp_path):
    """Clients ask radios and journeys while new tables are published twice (the watch picks them up) and
    reloaded by POST /reload: no request fails, and every answer is exactly the old tables' or the new ones'."""
    from playlists import load_tables
    from playlists.output import playlist_rows
    from playlists.service import make_playlist

    live = write_tables(tmp_path / "tables", seed=0, model_id="synthetic-a")
    versions = {"synthetic-a": load_tables(live)}
    staged = {name: write_tables(tmp_path / f"staging-{name}", seed=seed, model_id=name)
              for name, seed in (("synthetic-b", 1), ("synthetic-c", 2))}
    versions.update({name: load_tables(folder) for name, folder in staged.items()})
    queries = [("/radio", {"seed": s, "n": 10}, "radio", {"seed": s, "n": 10}) for s in (1001, 1100, 1250)]
    queries += [("/journey", {"from": 1000, "to": 1399, "n": 8}, "journey", {"start": "1000", "end": "1399", "n": 8})]
    expected = {(name, i): playlist_rows(tables, make_playlist(tables, kind, **options).entries)
                for name, tables in versions.items() for i, (_, _, kind, options) in enumerate(queries)}
    assert expected[("synthetic-a", 0)] != expected[("synthetic-b", 0)]  # the versions differ

    server = Server(live, tmp_path / "server.log", "--watch-seconds", "0.05")
    seen, failures, stop = [], [], threading.Event()

    def ask() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                for i, (path, params, _, _) in enumerate(queries):
                    try:
                        response = client.get(path, params=params)
                    except httpx.TransportError as error:
                        failures.append(repr(error))
                        continue
                    if response.status_code != 200:
                        failures.append(response.text)
                        continue
                    answer = response.json()
                    seen.append(answer["tables"]["model_id"])
                    if answer["tracks"] != expected[(answer["tables"]["model_id"], i)]:
                        failures.append(f"{path} {params}: an answer of neither tables")

    clients = [threading.Thread(target=ask) for _ in range(4)]
    try:
        for thread in clients:
            thread.start()
        time.sleep(0.5)
        for name in ("synthetic-b", "synthetic-c"):
            publish(staged[name], live)
            deadline = time.monotonic() + 30
            while httpx.get(f"{server.url}/health").json()["model_id"] != name:
                assert time.monotonic() < deadline, f"the watch did not load {name}"
                time.sleep(0.05)
            time.sleep(0.3)
        reloaded = httpx.post(f"{server.url}/reload", timeout=30)
        assert reloaded.status_code == 200 and reloaded.json()["tables"]["model_id"] == "synthetic-c"
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
        log = server.stop()
    assert not failures, failures[:3]
    assert {"synthetic-a", "synthetic-b", "synthetic-c"} <= set(seen), set(seen)
    assert "Traceback" not in log and log.count("loaded ") >= 3, log
