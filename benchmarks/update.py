"""``wavelist update`` at scale: the pass over an unchanged folder, and a few files added to large tables.

    python -m benchmarks.update [--files 10000] [--tracks 100000] [--added 10] [--workers 2] [--scratch DIR]
                                [--model MODEL --clips DIR] [--repeats 3]

1. **Nothing changed**: a folder of ``--files`` small generated WAV files (0.1 s each, in folders of 100) and
   tables made for it (the catalogue rows as ingest reads them: identity, size and time of every file; random
   vectors), then ``wavelist update --out TABLES`` on the unchanged folder, timed ``--repeats`` times as a user
   runs it (a new process: start-up and imports included). It must say that nothing changed and write nothing.
2. **A few files added to large tables**: a folder of ``--tracks`` small generated files and tables for them
   (clustered 64-d vectors from ``playlists.synthetic``, diffused tables as embed writes them by default, exact
   neighbours: what a fresh embed does below 200,000 tracks), then ``--added`` real clips from a generated demo
   catalogue put in the folder; ``wavelist update`` analyses them with the model, and computes the diffusion and
   the neighbour lists of every track anew from the stored vectors; the map keeps its places (no t-SNE). Timed
   once, with ``--direct_num_workers=--workers``.

Without ``--model``, a model is trained first (a small demo catalogue, ``cnn``, 1 epoch; not timed), as the
tables must come from the model that updates them. The small files are never decoded: only the added clips are.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


WAVELIST = [sys.executable, "-m", "wavelist.cli"]


def tiny_wav(index: int) -> bytes:
    """A valid 16-bit mono WAV of 0.1 s at 8 kHz whose samples depend on ``index`` (so every file differs)."""
    samples = (np.sin(np.arange(800) * (0.01 + index * 1e-6)) * 3000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_folder(folder: Path, n: int) -> None:
    for i in range(n):
        path = folder / f"{i // 100:04d}" / f"track {i:06d}.wav"
        if i % 100 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tiny_wav(i))


def train_model(scratch: Path) -> Path:
    """A small model (demo catalogue, cnn, 1 epoch) and the demo catalogue whose clips are added later."""
    from beam_jobs import ingest
    from model import train
    from wavelist import demo_catalogue

    styles = tuple(s for s in demo_catalogue.STYLES if s.genre in ("Techno", "Ambient", "Chiptune", "Drone"))
    catalogue = demo_catalogue.generate(scratch / "catalogue", seed=1, artists_per_style=4, tracks_per_artist=2,
                                        seconds=8.0, styles=styles, progress=False)
    flags = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    ingest.run(["--fma-metadata", str(catalogue / "fma_metadata"), "--audio-dir", str(catalogue / "fma_small"),
                "--out", str(scratch / "data"), *flags])
    train.run(["--data", str(scratch / "data"), "--out", str(scratch / "model"), "--model", "cnn", "--epochs", "1",
               "--verbose", "0"])
    return scratch / "model"


def write_tables(folder: Path, out: Path, model: Path, *, clustered: bool, k: int = 50) -> int:
    """Tables for the files of ``folder`` as ingest + embed would write them, with synthetic vectors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_jobs import ingest
    from core import catalogue as cat
    from playlists.synthetic import synthetic_vectors
    from schemas import tables
    from schemas.layout import SUMMARY, TableFiles
    from storage import files

    rows, _, _ = ingest.folder_catalogue(str(folder), None, None)
    rows = cat.assign_ids(ingest.identified(ingest.with_file_stats(rows)))
    n = len(rows)
    rows = [{**r, "duration_s": 0.1, "n_tiles": 1, "status": "ok",
             "title": r.get("title") or Path(r["path"]).stem} for r in rows]
    ids = np.array([r["track_id"] for r in rows], np.int64)
    vectors = (synthetic_vectors(n, n_styles=64, seed=0)[0] if clustered
               else np.random.default_rng(0).standard_normal((n, 64)).astype(np.float32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    info = files.load_model_info(str(model))
    spec = files.load_audio_spec(str(model))
    meta = {"model_id": info.model_id, "audio_spec": spec.to_dict(), "diffusion": {"neighbours": 5, "power": 3.0}}
    lists = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * 64), pa.array(vectors.reshape(-1)))
    rng = np.random.default_rng(1)
    neighbour = rng.integers(0, n, (n, k))
    with files.staged_output(str(out), overwrite=False, kind="embed") as staging:
        staging = Path(staging)
        for name, schema, table in (
                (TableFiles.TRACKS, tables.TRACKS, pa.Table.from_pylist(rows, schema=tables.TRACKS)),
                (TableFiles.EMBEDDINGS, tables.with_metadata(tables.EMBEDDINGS, **meta), pa.table([ids, lists], names=["track_id", "embedding"])),
                (TableFiles.UNDIFFUSED, tables.with_metadata(tables.EMBEDDINGS, **meta), pa.table([ids, lists], names=["track_id", "embedding"])),
                (TableFiles.NEIGHBOURS, tables.with_metadata(tables.NEIGHBOURS, **meta), pa.table({
                    "track_id": np.repeat(ids, k), "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
                    "neighbour_id": ids[neighbour.reshape(-1)], "similarity": np.full(n * k, 0.5, np.float32)})),
                (TableFiles.MAP3D, tables.with_metadata(tables.MAP3D, **meta), pa.table({
                    "track_id": ids, "x": vectors[:, 0], "y": vectors[:, 1], "z": vectors[:, 2]}))):
            (staging / name).mkdir()
            pq.write_table(table.cast(schema), staging / name / "part-00000-of-00001.parquet", write_page_checksum=True)
        (staging / SUMMARY).write_text(json.dumps({
            "model_id": info.model_id, "tracks_in_data": n, "tracks_embedded": n, "neighbour_rows": n * k, "k": k,
            "diffusion": {"neighbours": 5, "power": 3.0}, "neighbours": {"mode": "exact", "recall@10": 1.0}}))
    return n


def timed(command: list[str]) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    seconds = time.monotonic() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files of the unchanged folder")
    parser.add_argument("--tracks", type=int, default=100_000, help="tracks of the large tables")
    parser.add_argument("--added", type=int, default=10, help="files added to the large tables' folder")
    parser.add_argument("--workers", type=int, default=2, help="local Beam worker processes")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the nothing-changed update")
    parser.add_argument("--scratch", help="scratch folder (default: a temporary one, deleted at the end)")
    parser.add_argument("--model", help="a trained MODEL (default: train a small one first)")
    parser.add_argument("--clips", help="with --model: a folder of audio clips to add (default: the trained "
                        "model's demo catalogue)")
    args = parser.parse_args(argv)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="wavelist-update-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    flags = [f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing"]
    try:
        model = Path(args.model) if args.model else train_model(scratch)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")

        small, small_tables = scratch / "unchanged", scratch / "unchanged-tables"
        start = time.monotonic()
        write_folder(small, args.files)
        write_tables(small, small_tables, model, clustered=False)
        print(f"1. {args.files:,} files and their tables written in {time.monotonic() - start:.0f} s (not timed)")
        command = [*WAVELIST, "update", "--audio-dir", str(small), "--tables", str(small_tables), "--model", str(model),
                   "--out", str(small_tables), *flags]
        times = []
        for _ in range(args.repeats):
            seconds, said = timed(command)
            times.append(seconds)
        print(f"   nothing changed, {args.files:,} files: {' / '.join(f'{t:.1f}' for t in times)} s "
              f"(median {np.median(times):.1f} s; target < 10 s); it said: {said}")

        large, large_tables = scratch / "large", scratch / "large-tables"
        start = time.monotonic()
        write_folder(large, args.tracks)
        write_tables(large, large_tables, model, clustered=True)
        print(f"2. {args.tracks:,} files and their tables written in {time.monotonic() - start:.0f} s (not timed)")
        seconds, said = timed([*WAVELIST, "update", "--audio-dir", str(large), "--tables", str(large_tables),
                               "--model", str(model), "--out", str(large_tables), *flags])
        print(f"   nothing changed, {args.tracks:,} files: {seconds:.1f} s; it said: {said}")
        clips = sorted(Path(args.clips or scratch / "catalogue" / "fma_small").rglob("*.mp3"))
        if len(clips) < args.added:
            raise SystemExit(f"need {args.added} clips to add; found {len(clips)} (give --clips)")
        (large / "new").mkdir()
        for clip in clips[:args.added]:
            shutil.copy(clip, large / "new" / clip.name.replace(".mp3", " new.mp3"))
        seconds, said = timed([*WAVELIST, "update", "--audio-dir", str(large), "--tables", str(large_tables),
                               "--model", str(model), "--out", str(scratch / "large-updated"), *flags])
        summary = json.loads((scratch / "large-updated" / "summary.json").read_text())
        print(f"   {args.added} files added to {args.tracks:,} tracks: {seconds:.1f} s (target < 180 s); "
              f"it said: {said}")
        print(f"   summary: {json.dumps(summary['update'])}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
