"""Load test of ``wavelist serve`` on loopback: radio and journey at 1, 8 and 64 concurrent clients, and during a
table reload, against synthetic tables of 1,000,000 tracks.

    python -m benchmarks.serve [--size 1000000] [--clients 1 8 64] [--seconds 10] [--cache /tmp/wavelist-query-bench]

The tables (``playlists.synthetic``, as ``benchmarks/queries.py`` writes them, shared through ``--cache``) are
written once. The server runs as its own process (``python -m wavelist.cli serve``) on a hard-linked copy of them;
this process is the load generator: asyncio, one keep-alive HTTP/1.1 connection per client, each client sending
its next request as soon as the answer arrives (closed loop), random seeds (radio, 20 tracks) or random pairs
(journey, 20 tracks). Every answer other than 200 with the whole body, and every connection error, counts as a
failure. For the reload rows, a new TABLES folder (hard links to the same files, a new folder) is published by
renaming it into place as ``wavelist embed`` does, while the clients run; the server's watch loads it and swaps
it in; the rows give the latencies of the requests sent between the publish and the swap, and of the whole run.
Each run also reports the server process's CPU time per answered request (user + system), which the machine's
other load changes less than the latencies.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
TABLE_FILES = ("embeddings.parquet", "neighbours.parquet", "tracks.parquet", "map3d.parquet")


def linked_copy(source: Path, target: Path) -> Path:
    """``target`` as a new folder of hard links to ``source``'s table files (no data copied)."""
    target.mkdir(parents=True)
    for name in TABLE_FILES:
        os.link(source / name, target / name)
    return target


class Connection:
    """One keep-alive HTTP/1.1 connection that sends GET requests and reads whole answers."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def run_load(port: int, paths, clients: int, seconds: float, during=None) -> dict:
    """``clients`` closed-loop clients asking ``paths()`` for ``seconds``; ``during`` (a coroutine function taking
    the start time) runs beside them and may return a time window whose requests are reported apart."""
    latencies: list[tuple[float, float]] = []  # (start, seconds)
    failures: list[str] = []
    connections = [Connection(port) for _ in range(clients)]
    for connection in connections:  # one warm-up request each, not counted
        await connection.get(paths())
    started = time.perf_counter()
    deadline = started + seconds

    async def client(connection: Connection) -> None:
        while time.perf_counter() < deadline:
            path = paths()
            t0 = time.perf_counter()
            try:
                status, body = await connection.get(path)
                if status != 200:
                    failures.append(f"{status} {body[:200]!r}")
            except (OSError, asyncio.IncompleteReadError, ValueError, AttributeError) as error:
                failures.append(repr(error))
                connection.close()
                continue
            latencies.append((t0, time.perf_counter() - t0))

    tasks = [asyncio.create_task(client(c)) for c in connections]
    window = await during(started) if during else None
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    result = summarise([s for _, s in latencies], elapsed, failures)
    if window:
        inside = [s for t, s in latencies if window[0] <= t <= window[1]]
        result["reload"] = {**summarise(inside, window[1] - window[0], []), "seconds": round(window[1] - window[0], 1)}
    return result


def summarise(seconds: list[float], elapsed: float, failures: list[str]) -> dict:
    ms = np.array(seconds) * 1e3 if seconds else np.array([np.nan])
    return {"requests": len(seconds), "failures": len(failures), "failure_examples": failures[:3],
            "throughput": round(len(seconds) / elapsed, 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(np.max(ms)), 2)}


def health(port: int) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as answer:
        return json.load(answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="the server's --threads (default: its default, one per core)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/wavelist-query-bench"))
    parser.add_argument("--queries", nargs="+", choices=("radio", "journey"), default=["radio", "journey"])
    parser.add_argument("--no-reload", action="store_true", help="leave out the runs during a reload")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from playlists.synthetic import write_synthetic_tables

    source = args.cache / f"tables-{args.size}"
    if not (source / "map3d.parquet").exists():
        started = time.perf_counter()
        write_synthetic_tables(source, args.size, k=50)
        print(f"{args.size:,} tracks: tables written in {time.perf_counter() - started:.1f} s", flush=True)
    work = args.cache / f"serve-{args.size}"
    shutil.rmtree(work, ignore_errors=True)
    live = linked_copy(source, work / "tables")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (work / "server.log").open("w")
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "wavelist.cli", "serve", "--tables", str(live), "--port", str(port),
                               "--watch-seconds", "0.5", "--threads", str(args.threads)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT)
    results: dict = {"size": args.size, "seconds": args.seconds, "threads": args.threads, "runs": []}
    try:
        while True:
            try:
                health(port)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"the server stopped: {(work / 'server.log').read_text()}")
                time.sleep(0.5)
        results["startup_s"] = round(time.perf_counter() - started, 1)
        print(f"server up in {results['startup_s']} s (load of {args.size:,} tracks)", flush=True)
        rng = np.random.default_rng(0)
        first, last = 1000, 1000 + args.size - 1  # synthetic ids

        def radio() -> str:
            return f"/radio?seed={rng.integers(first, last + 1)}&n=20"

        def journey() -> str:
            a, b = rng.integers(first, last + 1, 2)
            b = b if b != a else (first if a != first else last)
            return f"/journey?from={a}&to={b}&n=20"

        def report(name: str, clients: int, result: dict) -> None:
            result.update(query=name, clients=clients, load_average_1min=round(os.getloadavg()[0], 2))
            results["runs"].append(result)
            line = (f"{name:<8} {clients:>3} clients: {result['throughput']:8.1f} req/s  p50 {result['p50_ms']:8.2f} ms  "
                    f"p99 {result['p99_ms']:8.2f} ms  max {result['max_ms']:8.2f} ms  {result['requests']:6d} requests  "
                    f"{result['failures']} failed  (load average {result['load_average_1min']})")
            if "server_cpu_ms_per_request" in result:
                line += f"  server CPU {result['server_cpu_ms_per_request']:.2f} ms/request"
            if "reload" in result:
                r = result["reload"]
                line += (f"\n         during the reload ({r['seconds']} s from publish to swap): {r['requests']} requests, "
                         f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms")
            print(line, flush=True)

        def server_cpu() -> float:
            times = psutil.Process(server.pid).cpu_times()
            return times.user + times.system

        kinds = [(name, paths) for name, paths in (("radio", radio), ("journey", journey)) if name in args.queries]
        for name, paths in kinds:
            for clients in args.clients:
                cpu = server_cpu()
                result = asyncio.run(run_load(port, paths, clients, args.seconds))
                result["server_cpu_ms_per_request"] = round((server_cpu() - cpu) * 1e3 / max(result["requests"], 1), 2)
                report(name, clients, result)

        for name, paths in [] if args.no_reload else kinds:
            async def publish_and_wait(t0: float) -> tuple[float, float]:
                await asyncio.sleep(1.0)
                generation = health(port)["generation"]
                staging = linked_copy(source, work / f".tables.partial-{generation}")
                old = work / f".tables.old-{generation}"
                published = time.perf_counter()
                live.rename(old)
                staging.rename(live)  # as embed publishes: the whole folder appears by one rename
                shutil.rmtree(old)
                while (await asyncio.to_thread(health, port))["generation"] == generation:
                    await asyncio.sleep(0.2)
                return published, time.perf_counter()

            result = asyncio.run(run_load(port, paths, 8, args.seconds + 40, during=publish_and_wait))
            report(f"{name}+reload", 8, result)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
