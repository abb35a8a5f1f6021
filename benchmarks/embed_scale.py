"""The embed job after inference at scale: track vectors injected at the vector stage, the real tail.

    python -m benchmarks.embed_scale [--sizes 100000 1000000] [--modes approximate exact] [--workers 2]
                                     [--exact-up-to 300000] [--map-sample 20000] [--k 50] [--diffusion 0]

For each size and neighbour mode: synthetic clustered unit vectors (``playlists.synthetic``, 64-d) and a DATA
``tracks.parquet`` are written to a scratch folder; the pipeline reads the vectors in chunks as
``(track_id, vector)`` elements, which is what the model stage hands on, and applies the embed job's
``EmbedTail`` (embeddings, neighbours, map, tracks, each written as Parquet shards) on the FnApiRunner with
``--workers`` worker processes. Printed: wall time, peak memory (VmHWM) of each worker process and of this
(the runner's) process, each stage's share of the time the workers spent in its transforms (Beam's
``total_msecs``), the rows written; then the growth fitted between the two largest sizes of a mode and the
projection to 10,000,000 tracks on Dataflow (see ``--help``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


CHUNK = 20_000
STAGES = ("Vectors", "WriteUndiffused", "Diffusion", "WriteEmbeddings", "Neighbours", "WriteNeighbours", "Map layout", "Map placement", "WriteMap",
          "Tracks", "WriteTracks")
# Dataflow batch list prices (us-central1) as known to us, 2024: vCPU-hour, GB-hour of memory, GB of
# Dataflow Shuffle processed. Check https://cloud.google.com/dataflow/pricing before relying on them.
PRICE_VCPU_HOUR, PRICE_GB_HOUR, PRICE_SHUFFLE_GB = 0.056, 0.003557, 0.011


def write_inputs(folder: Path, n: int, dim: int) -> tuple[Path, Path]:
    """``vectors.npy`` (unit rows; track ids ``1000 + row``) and a DATA ``tracks.parquet`` (every 50th track
    rejected, so the join has rows to leave out)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from playlists.synthetic import synthetic_vectors
    from schemas import tables

    vectors, style, artist = synthetic_vectors(n, n_styles=64, dim=dim, seed=0)
    np.save(folder / "vectors.npy", vectors)
    ids = np.arange(n, dtype=np.int64) + 1000
    status = np.where(np.arange(n) % 50 == 49, "rejected", "ok")
    columns = {
        "track_id": ids, "path": [f"audio/{i}.mp3" for i in ids], "genre": [f"Style{s}" for s in style],
        "artist_id": artist.astype(np.int64), "artist": [f"Artist {a}" for a in artist],
        "title": [f"Track {i}" for i in ids], "split": ["train"] * n,
        "duration_s": np.full(n, 30.0, np.float32), "n_tiles": np.full(n, 10, np.int32), "status": status,
    }
    untagged = {field.name: pa.nulls(n, field.type) for field in tables.TRACKS if field.name not in columns}
    pq.write_table(pa.table({**columns, **untagged}, schema=tables.TRACKS), folder / "tracks.parquet")
    return folder / "vectors.npy", folder / "tracks.parquet"


class PeakMemory:
    """Polls the peak resident memory (VmHWM) of every descendant process of this one, by pid."""

    def __init__(self, every_s: float = 0.25):
        self.peaks: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self._every, self._stop = every_s, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def _children(pid: int) -> list[int]:
        found = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                found += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return found

    def _poll(self) -> None:
        while not self._stop.is_set():
            todo, seen = self._children(os.getpid()), set()
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                todo += self._children(pid)
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    cmdline = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
                except OSError:
                    continue
                hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
                if hwm:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), int(hwm.group(1)) * 1024)
                    self.names[pid] = cmdline[:120]
            self._stop.wait(self._every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def stage_msecs(result) -> dict[str, float]:
    """Milliseconds the workers spent in each tail stage's transforms (Beam's ``total_msecs`` per transform)."""
    from apache_beam.metrics import monitoring_infos

    totals: dict[str, float] = {}
    for info in result.monitoring_infos():
        if not info.urn.endswith("ptransform_execution_time:total_msecs:v1"):
            continue
        label = info.labels.get("PTRANSFORM", "")
        parts = label.split("/")
        stage = parts[1] if parts[0] == "Tail" and len(parts) > 1 else "Inject" if parts[0].startswith("Inject") else None
        if stage == "Map":  # the t-SNE of the sample runs on one worker; the rest is placed in parallel
            stage = "Map layout" if len(parts) > 2 and parts[2] in ("TSNE", "Layout") else "Map placement"
        if stage is None:
            continue
        totals[stage] = totals.get(stage, 0.0) + monitoring_infos.extract_counter_value(info)
    return totals


def run_tail(vectors_path: Path, tracks_path: Path, out: Path, n: int, *, approximate: bool, k: int,
             workers: int, map_sample: int, diffusion: int) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_jobs import common
    from beam_jobs.embed import EmbedTail
    from storage import files

    def load(chunk: int):
        vectors = np.load(vectors_path, mmap_mode="r")
        for row in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            if row % 50 != 49:  # as the job: only accepted tracks have vectors
                yield 1000 + row, np.array(vectors[row])

    out.mkdir(parents=True, exist_ok=True)
    argv = [f"--direct_num_workers={workers}"]
    pipeline = common.make_pipeline(PipelineOptions(argv), argv)
    vectors = (pipeline | "Inject" >> beam.Create(list(range(-(-n // CHUNK))))
               | "InjectSpread" >> beam.Reshuffle() | "InjectVectors" >> beam.FlatMap(load))
    tail = EmbedTail(staging=str(out), tracks_file=str(tracks_path), provenance={"model_id": "benchmark"}, k=k,
                     approximate=approximate, map_sample=map_sample, diffusion=diffusion)
    _ = vectors | "Tail" >> tail
    if approximate:
        _ = tail.report | "Report" >> beam.Map(lambda r: (out / "_report.json").write_text(json.dumps(r)))
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = pipeline.run()
        result.wait_until_finish()
        wall = time.perf_counter() - started
    workers_peak = sorted(memory.peaks.values(), reverse=True)  # every process the runner started
    msecs = stage_msecs(result)
    tail_msecs = sum(v for s, v in msecs.items() if s != "Inject") or 1.0
    rows = {name: files.parquet_num_rows(str(out / f"{name}.parquet"))
            for name in ("embeddings", "neighbours", "map3d", "tracks")}
    shards = {name: len(files.table_files(str(out / f"{name}.parquet"))) for name in rows}
    report = json.loads((out / "_report.json").read_text()) if approximate else {}
    return {
        "n": n, "mode": "approximate" if approximate else "exact", "wall_s": round(wall, 1),
        "peak_gb_worker_processes": [round(p / 2**30, 2) for p in workers_peak[:max(workers, 1) + 1]],
        "peak_gb_runner": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "stage_share": {s: round(msecs.get(s, 0.0) / tail_msecs, 3) for s in STAGES},
        "stage_s": {s: round(msecs.get(s, 0.0) / 1000, 1) for s in (*STAGES, "Inject")},
        "rows": rows, "shards": shards,
        **({"recall@10": report.get("recall@10"), "nprobe": report.get("nprobe"), "lists": report.get("lists")}
           if approximate else {}),
    }


def projection(rows: list[dict], target: int = 10_000_000, workers: int = 25, vcpus: int = 4,
               gb_per_vm: float = 16.0) -> list[str]:
    """The growth of the tail's worker time (all stages but the t-SNE, which does not grow with the catalogue)
    and of the peak memory per worker process, fitted between the two largest sizes of each mode, projected to
    ``target`` tracks on Dataflow: ``workers`` VMs of ``vcpus`` vCPUs (one SDK process per vCPU) and
    ``gb_per_vm`` GB, at the list prices above; start-up (about 6 minutes of every VM) included."""
    lines = []
    for mode in ("approximate", "exact"):
        measured = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["n"])
        if len(measured) < 2:
            continue
        a, b = measured[-2], measured[-1]
        work = lambda r: sum(r["stage_s"][s] for s in STAGES if s != "Map layout")  # noqa: E731
        growth = np.log(work(b) / work(a)) / np.log(b["n"] / a["n"])
        worker_s = work(b) * (target / b["n"]) ** growth
        tsne_s = b["stage_s"]["Map layout"]
        peak = lambda r: max(r["peak_gb_worker_processes"])  # noqa: E731
        memory_growth = np.log(peak(b) / peak(a)) / np.log(b["n"] / a["n"])
        memory = peak(b) * (target / b["n"]) ** memory_growth
        wall_s = max(worker_s / (workers * vcpus), tsne_s)
        vm_hours = workers * (wall_s / 3600 + 0.1)
        shuffle_gb = target * (64 * 4 * 3 + 50 * 16 + 200) / 1e9  # vectors to ~3 shuffles, lists, track rows
        cost = (vm_hours * vcpus * PRICE_VCPU_HOUR + vm_hours * gb_per_vm * PRICE_GB_HOUR
                + shuffle_gb * PRICE_SHUFFLE_GB)
        lines.append(
            f"{mode}: worker time without the t-SNE grew as n^{growth:.2f} ({a['n']:,} -> {b['n']:,}): at {target:,} "
            f"about {worker_s / 3600:.2f} worker-hours, plus the t-SNE ({tsne_s:.0f} s on one worker, constant); "
            f"peak memory per worker process grew as n^{memory_growth:.2f}: about {memory:.1f} GB at {target:,}; "
            f"on {workers} VMs x {vcpus} vCPU, {gb_per_vm:.0f} GB: about {wall_s / 60:.1f} min after start-up, "
            f"${cost:.2f} at list prices (vCPU ${PRICE_VCPU_HOUR}/h, memory ${PRICE_GB_HOUR}/GB-h, shuffle "
            f"${PRICE_SHUFFLE_GB}/GB on {shuffle_gb:.0f} GB)")
    return lines


def main() -> None:
    from core.neighbours import MAP_SAMPLE

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", choices=("approximate", "exact"), default=["approximate", "exact"])
    parser.add_argument("--exact-up-to", type=int, default=300_000,
                        help="skip exact runs above this size (exact search grows as n^2: ~20 min at 1,000,000 here)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--map-sample", type=int, default=MAP_SAMPLE, help="tracks the map lays out (the rest are placed beside them)")
    parser.add_argument("--diffusion", type=int, default=0, help="the diffusion's neighbours (the embed job's default "
                        "is 5; 0, this script's default, is the tail the figures in RESULTS.md were measured on)")
    parser.add_argument("--scratch", default=None)
    args = parser.parse_args()
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="embed-scale-"))
    rows = []
    for n in args.sizes:
        folder = scratch / f"n{n}"
        folder.mkdir(parents=True, exist_ok=True)
        vectors_path, tracks_path = write_inputs(folder, n, args.dim)
        for mode in args.modes:
            if mode == "exact" and n > args.exact_up_to:
                continue
            row = run_tail(vectors_path, tracks_path, folder / f"tables-{mode}", n, approximate=mode == "approximate",
                           k=args.k, workers=args.workers, map_sample=args.map_sample, diffusion=args.diffusion)
            row["map_sample"], row["diffusion"] = args.map_sample, args.diffusion
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\n| n | mode | wall (s) | peak per worker process (GB) | " + " | ".join(STAGES) + " |")
    print("|---|---|---|---|" + "---|" * len(STAGES))
    for r in rows:
        shares = " | ".join(f"{100 * r['stage_share'][s]:.0f} %" for s in STAGES)
        print(f"| {r['n']:,} | {r['mode']} | {r['wall_s']:.1f} | {max(r['peak_gb_worker_processes']):.2f} | {shares} |")
    for line in projection(rows):
        print(line)


if __name__ == "__main__":
    main()
