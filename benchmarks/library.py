"""A whole library, folder to first radio: ingest, train at its defaults, embed, and bliss on the same songs.

    python -m benchmarks.library --make N WHOLE SONGS     # once: N full-length songs made from WHOLE's songs
    python -m benchmarks.library SONGS WORK [--skip-bliss] [--peers-venv DIR] [--report]

WHOLE is the full-length corpus of ``benchmarks/full_length_corpus.py`` (``OUT/whole``). ``--make`` writes N
songs into ``SONGS/audio``: song i is the first half of one whole song joined to the second half of another
(MP3 frames copied, no re-encoding), so every file is a different full-length song of real music (about as long
as the corpus's songs) and N can exceed the corpus.

The run times each user command as the user runs it (``wavelist ingest --audio-dir SONGS/audio``, ``wavelist
train`` at its defaults, ``wavelist embed``, then one ``wavelist radio``), on the default multi-process runner:
wall time, CPU time of every process of the step (children included), and the peak resident memory of each
process of the step's tree (sampled every 0.2 s with psutil): the largest one and the sum at the busiest moment.
Then bliss (``bliss_audio.Song(path).analysis``, benchmarks/peers.py's worker, its own venv) on the same files.
Disk: the bytes of DATA, MODEL and TABLES. Projections to 10,000 and 100,000 songs on a 4-core machine: the
per-song steps (ingest, embed, bliss) scale with the songs and divide among the cores; training runs a fixed
number of batches (its defaults) plus one pass over the tiles, projected as its measured wall time plus that pass
over the extra tiles at embed's measured CPU per tile (read the figures as a scale: a desktop core is not this
shared one).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from benchmarks.budget import folder_bytes
from benchmarks.peers import ensure_peers_venv, run_peer
from schemas.layout import TableFiles

REPO = Path(__file__).resolve().parents[1]
CORES, LIBRARIES = 4, (10_000, 100_000)


def make_songs(whole: Path, songs: Path, n: int, seed: int = 0) -> None:
    """``n`` MP3 songs in ``songs/audio``: the first half of one song of ``whole`` joined to the second half of
    another, in one ffmpeg call each (the concat demuxer's in and out points, frames copied)."""
    import pandas as pd

    tracks = pd.read_csv(whole / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1])
    sources = [(whole / "audio" / f"{i:06d}"[:3] / f"{i:06d}.mp3", float(d))
               for i, d in tracks[("track", "duration")].items()]
    rng = random.Random(seed)
    out = songs / "audio"
    for i in range(n):
        (first, first_s), (second, second_s) = rng.sample(sources, 2)
        target = out / f"{i // 1000:03d}" / f"song{i:06d}.mp3"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        parts = songs / "parts.txt"
        parts.write_text(f"file '{first}'\noutpoint {first_s / 2:.3f}\nfile '{second}'\ninpoint {second_s / 2:.3f}\n")
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(parts),
                        "-c", "copy", str(target)], check=True)
        if (i + 1) % 200 == 0:
            print(f"{i + 1} of {n} songs", flush=True)
    print(f"{n} songs in {out}")


class TreeMemory:
    """Peak resident memory of a process tree, sampled: the largest single process and the busiest sum."""

    def __init__(self, root: int, every_s: float = 0.2):
        self._root, self._every = psutil.Process(root), every_s
        self.largest = self.busiest = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                tree = [self._root, *self._root.children(recursive=True)]
                sizes = []
                for process in tree:
                    try:
                        sizes.append(process.memory_info().rss)
                    except psutil.Error:
                        pass
                self.largest, self.busiest = max(self.largest, *sizes), max(self.busiest, sum(sizes))
            except psutil.Error:
                pass
            time.sleep(self._every)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def run_step(name: str, argv: list[str], work: Path) -> dict:
    """One wavelist command: wall, CPU of its whole tree, peak memory per process and in all."""
    cpu, started = children_cpu(), time.perf_counter()
    with (work / f"{name}.log").open("w") as log:
        process = subprocess.Popen([str(REPO / ".venv" / "bin" / "wavelist"), *argv], stdout=log, stderr=subprocess.STDOUT)
        memory = TreeMemory(process.pid)
        code = process.wait()
        memory.stop()
    if code:
        sys.exit(f"{name} failed (exit {code}); see {work / f'{name}.log'}")
    result = {"wall_s": time.perf_counter() - started, "cpu_s": children_cpu() - cpu,
              "peak_process_gb": memory.largest / 1e9, "peak_all_gb": memory.busiest / 1e9}
    print(f"{name}: {result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU, peak {result['peak_process_gb']:.2f} GB "
          f"in one process, {result['peak_all_gb']:.2f} GB in all", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("songs", type=Path)
    parser.add_argument("work", type=Path, nargs="?")
    parser.add_argument("--make", type=int, metavar="N", help="write N songs from the whole corpus given as SONGS "
                        "into the folder given as WORK, and stop")
    parser.add_argument("--skip-bliss", action="store_true")
    parser.add_argument("--report", action="store_true", help="print the tables of the run WORK/library.json holds")
    parser.add_argument("--peers-venv", type=Path, default=Path.home() / ".cache" / "wavelist-peers")
    args = parser.parse_args()
    if args.make:
        return make_songs(args.songs, args.work, args.make)
    work = args.work
    if args.report:
        return report(json.loads((work / "library.json").read_text()))
    work.mkdir(parents=True, exist_ok=True)
    files = sorted((args.songs / "audio").rglob("*.mp3"))
    data, model, tables = work / "data", work / "model", work / "tables"
    steps = {
        "ingest": ["ingest", "--audio-dir", str(args.songs / "audio"), "--out", str(data), "--overwrite"],
        "train": ["train", "--data", str(data), "--out", str(model), "--overwrite", "--verbose", "0"],
        "embed": ["embed", "--data", str(data), "--model", str(model), "--out", str(tables), "--overwrite"],
    }
    results = {"songs": len(files), "audio_bytes": sum(f.stat().st_size for f in files)}
    for name, argv in steps.items():  # a step whose output and figures a cut run left is not run again
        done = work / f"{name}.json"
        if not (done.exists() and (work / name.replace("ingest", "data").replace("train", "model")
                                   .replace("embed", "tables") / "_SUCCESS").exists()):
            done.write_text(json.dumps(run_step(name, argv, work)))
        results[name] = json.loads(done.read_text())
    seed = str(pq.read_table(tables / TableFiles.TRACKS, columns=["track_id"])["track_id"][0])
    results["radio"] = run_step("radio", ["radio", "--tables", str(tables), "--seed", seed], work)
    summary = json.loads((data / "summary.json").read_text())
    results.update(tiles=summary["tiles"], accepted=summary["accepted"],
                   disk={name: folder_bytes(folder) for name, folder in (("data", data), ("model", model), ("tables", tables))})
    if not args.skip_bliss:
        python = ensure_peers_venv(args.peers_venv)
        if python:
            results["bliss"] = {k: v for k, v in run_peer("bliss", str(python), files, work, "library").items()
                                if k != "vectors"}
    (work / "library.json").write_text(json.dumps(results, indent=1, default=str))
    report(results)


def report(r: dict) -> None:
    n = r["songs"]
    print(f"\n{n} songs ({r['audio_bytes'] / n / 1e6:.1f} MB of MP3 each), {r['accepted']} accepted, "
          f"{r['tiles']} tiles ({r['tiles'] / r['accepted']:.1f} a song)\n")
    print("| step | wall | CPU | CPU per song | peak memory, one process | peak memory, all processes |")
    print("|---|---|---|---|---|---|")
    for name in ("ingest", "train", "embed", "radio"):
        s = r[name]
        print(f"| wavelist {name} | {s['wall_s']:.0f} s | {s['cpu_s']:.0f} s | {s['cpu_s'] / n:.3f} s | "
              f"{s['peak_process_gb']:.2f} GB | {s['peak_all_gb']:.2f} GB |")
    if "bliss" in r:
        b = r["bliss"]
        print(f"| bliss `Song(path).analysis` | {b['wall_per_track'] * n + b['startup_wall']:.0f} s | "
              f"{b['cpu_per_track'] * n + b['startup_cpu']:.0f} s | {b['cpu_per_track']:.3f} s | | |")
    print("\n| folder | bytes | per song |\n|---|---|---|")
    for name, size in r["disk"].items():
        print(f"| {name.upper()} | {size / 1e6:.0f} MB | {size / n / 1e6:.3f} MB |")
    per_song = (r["ingest"]["cpu_s"] + r["embed"]["cpu_s"]) / n
    print(f"\nwavelist ingest + embed: {per_song:.3f} s CPU a song (start-up included)"
          + (f"; bliss {r['bliss']['cpu_per_track']:.3f} s: {r['bliss']['cpu_per_track'] / per_song:.1f}x" if "bliss" in r else ""))
    per_tile = r["embed"]["cpu_s"] / r["tiles"]  # the model over one tile, with its reading, as embed runs it
    print(f"\nprojection on a {CORES}-core machine: ingest + embed and bliss spread over the cores; training as "
          f"measured here (a fixed number of batches) plus its one pass over the extra tiles at embed's "
          f"{1000 * per_tile:.1f} ms CPU per tile:")
    print("| songs | wavelist ingest + embed | wavelist train | wavelist, folder to radio | bliss analysis |")
    print("|---|---|---|---|---|")
    for songs in LIBRARIES:
        work_s = per_song * songs / CORES
        extra_tiles = max(0.0, songs * r["tiles"] / r["accepted"] - r["tiles"])
        train_s = r["train"]["wall_s"] + extra_tiles * per_tile / CORES
        bliss = f"{r['bliss']['cpu_per_track'] * songs / CORES / 60:.0f} min" if "bliss" in r else "-"
        print(f"| {songs:,} | {work_s / 60:.0f} min | {train_s / 60:.0f} min | {(work_s + train_s) / 60:.0f} min | "
              f"{bliss} |")


if __name__ == "__main__":
    main()
