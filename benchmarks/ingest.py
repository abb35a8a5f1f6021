"""Ingest speed on real MP3 clips: the decoder's floor, the naive librosa loop, and ``wavelist ingest``.

    python -m benchmarks.ingest CORPUS [--clips 233] [--repeat 3] [--workers 2]

CORPUS is in FMA layout (``fma_metadata/tracks.csv`` and ``audio/XXX/XXXXXX.mp3``), e.g. the one
``shared/build_music_corpus.py`` builds. All figures come from the same run; throughputs are clips per
second, per core where the job uses several. The job runs over the clips ``--repeat`` times (a folder of
links with distinct names) so that its fixed start-up weighs little; a run of a few clips measures that
start-up, which the steady-state rate leaves out.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


FMA_SMALL, FMA_LARGE, STREAMING = 8_000, 106_574, 10_000_000


def timed(label: str, files: list[Path], work) -> float:
    """Run ``work(path)`` over ``files`` in this process; return clips per second."""
    started = time.perf_counter()
    for path in files:
        work(path)
    rate = len(files) / (time.perf_counter() - started)
    print(f"  {label:<46} {rate:7.1f} clips/s", flush=True)
    return rate


def stage_breakdown(files: list[Path]) -> dict[str, float]:
    """Mean CPU milliseconds per clip of each step of wavelist's analysis, one process."""
    import soundfile

    from core import audio
    from schemas.audio import DEFAULT_AUDIO_SPEC as spec
    from schemas.tile_example import TILE_COMPRESSION, encode_tile

    totals: dict[str, float] = {}

    def clock(name, fn, *args):  # CPU time of the process (all its threads): wall time counts other people's work
        started = time.process_time()
        result = fn(*args)
        totals[name] = totals.get(name, 0.0) + time.process_time() - started
        return result

    for path in files:
        clock("decode (soundfile.read, the floor)", soundfile.read, str(path))
        mono = clock("decode + downmix + resample", audio.decode, str(path), spec)
        power = clock("STFT", audio.power_spectrogram, mono, spec)
        mel = clock("log-mel", audio.log_mel, power, spec)
        tiles = clock("tiling", audio.tiles, mel, spec)
        clock("summary features", audio.summary_features, mono, power, mel, spec)

        def encode_and_compress():
            import zlib

            records = b"".join(encode_tile(track_id=1, tile_index=i, mel=t) for i, t in enumerate(tiles))
            return zlib.compress(records, 6) if TILE_COMPRESSION == "gzip" else records

        clock(f"Example encoding ({TILE_COMPRESSION})", encode_and_compress)
    return {name: 1000 * total / len(files) for name, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--clips", type=int, default=233)
    parser.add_argument("--repeat", type=int, default=3, help="times the job goes over the clips")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import librosa
    import soundfile

    from beam_jobs import ingest

    files = sorted((args.corpus / "audio").rglob("*.mp3"))[: args.clips]
    print(f"{len(files)} clips from {args.corpus}, {os.cpu_count()} cores")
    # warm the caches (numba, the OS page cache) so that no method pays for them
    for path in files[:3]:
        librosa.feature.melspectrogram(y=librosa.load(path, sr=22050)[0], sr=22050)
    for path in files:
        path.read_bytes()

    print("one process:")
    floor = timed("decoder floor: soundfile.read", files, lambda p: soundfile.read(str(p)))
    scratch = Path(tempfile.mkdtemp())

    def naive(path):
        y, sr = librosa.load(path, sr=22050)
        np.save(scratch / f"{path.stem}.npy", librosa.feature.melspectrogram(y=y, sr=sr))

    naive_rate = timed("naive loop: librosa.load + melspectrogram + np.save", files, naive)

    print(f"wavelist ingest, FnApiRunner multi-process, {args.workers} workers:")

    def ingest_run(clips: list[Path], name: str) -> tuple[dict, float]:
        folder = scratch / f"audio-{name}"
        folder.mkdir()
        for i, path in enumerate(clips):
            (folder / f"{i:06d}.mp3").symlink_to(path)
        started = time.perf_counter()
        summary = ingest.run(["--audio-dir", str(folder), "--out", str(scratch / name),
                              f"--direct_num_workers={args.workers}"])
        return summary, time.perf_counter() - started

    few = files[: 2 * args.workers]
    _, startup = ingest_run(few, "startup")
    workload = files * args.repeat
    summary, wall = ingest_run(workload, "all")
    peak_worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rate = summary["inputs"] / wall
    steady = (len(workload) - len(few)) / (wall - startup)
    per_core = steady / args.workers
    print(f"  {summary['accepted']} accepted, {summary['rejected']} rejected, {summary['tiles']} tiles")
    print(f"  end to end: {len(workload)} clips in {wall:.1f} s -> {rate:.1f} clips/s (start-up included)")
    print(f"  start-up: {startup:.1f} s for a run of {len(few)} clips (worker processes, imports)")
    print(f"  steady state: {steady:.1f} clips/s, {per_core:.1f} clips/s per core")
    print(f"  peak memory of one worker process: {peak_worker_mb:.0f} MB")

    print("time per clip of each step (one process, ms):")
    breakdown = stage_breakdown(files[:40])
    for name, ms in breakdown.items():
        print(f"  {name:<28} {ms:7.1f}")
    steps = {k: v for k, v in breakdown.items() if "floor" not in k}
    print(f"  {'sum of wavelist steps':<28} {sum(steps.values()):7.1f}")

    print("ratios:")
    print(f"  per-core throughput / decoder floor:   {per_core / floor:.2f}  (target >= 0.6; steady state)")
    print(f"  total throughput / naive loop:         {steady / naive_rate:.2f}  (target >= 2; steady state)")
    print(f"  same, start-up included ({len(workload)} clips): {rate / naive_rate:.2f}")
    print("projections at the measured per-core rate (wall time, minutes; start-up and scheduling excluded):")
    for name, clips in [("fma_small", FMA_SMALL), ("fma_large", FMA_LARGE), ("10 million tracks", STREAMING)]:
        cells = [f"{clips / (per_core * cores) / 60:9.1f} min on {label}"
                 for label, cores in [("2 cores", 2), ("Dataflow 50 x 4 vCPU", 200), ("Dataflow 250 x 4 vCPU", 1000)]]
        print(f"  {name:<18} " + " | ".join(cells))
    print(json.dumps({"floor": floor, "naive": naive_rate, "wavelist_end_to_end": rate, "wavelist_steady": steady,
                      "wavelist_per_core": per_core, "startup_s": startup,
                      "peak_worker_mb": peak_worker_mb, "breakdown_ms": breakdown}))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
