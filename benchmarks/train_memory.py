"""Peak memory and time of ``wavelist train`` with the tiles in memory against read from the shards.

    python -m benchmarks.train_memory DATA --copies N --scratch DIR [--steps 20] [--epochs 1]

DATA is an ingest output (e.g. of a real-music corpus). The benchmark writes N copies of it under DIR as one larger
catalogue (tiles, tracks and summary statistics, each copy's track ids offset so that every track is its own), then
trains the default contrastive model on it twice, ``--tiles-in-memory-gb`` high (the tiles held in memory) and 0
(read from the shards), each in its own process, and prints one JSON line per run and a Markdown table: tiles,
their size in memory, wall time, peak resident memory (VmHWM of the trainer process, polled). Only the scratch
folder's own files are written and deleted.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFSET = 10_000_000  # track ids of copy c: id + c * OFFSET


def copy_catalogue(data: Path, out: Path, copies: int) -> int:
    """``copies`` copies of DATA's tiles, tracks and summary statistics in ``out`` (an ingest output's layout);
    returns the tiles written."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import tensorflow as tf

    from model import data as tile_data
    from schemas.layout import DataFiles
    from schemas.tile_example import TILE_COMPRESSION_TF, TILE_FILE_SUFFIX, TILES_FOLDER, decode_tile, encode_tile
    from storage import files

    spec = files.load_audio_spec(str(data), made_by="wavelist ingest")
    (out / TILES_FOLDER).mkdir(parents=True)
    for name in (DataFiles.TRACKS, DataFiles.FEATURES):
        table = pq.read_table(data / name)
        column = table.schema.get_field_index("track_id")
        pq.write_table(pa.concat_tables([table.set_column(column, "track_id", pc.add(table["track_id"], c * OFFSET))
                                         for c in range(copies)]), out / name)
    for extra in data.iterdir():  # the audio spec and the job's other small files, as they are
        if extra.is_file() and not (out / extra.name).exists():
            shutil.copy2(extra, out / extra.name)
    written = 0
    for shard in tile_data.all_tile_files(str(data)):
        tiles = [decode_tile(record, spec) for record in
                 tf.data.TFRecordDataset([shard], compression_type=TILE_COMPRESSION_TF).as_numpy_iterator()]
        for c in range(copies):
            name = Path(shard).name.replace(TILE_FILE_SUFFIX, f"-copy{c}{TILE_FILE_SUFFIX}")
            with tf.io.TFRecordWriter(str(out / TILES_FOLDER / name), options=TILE_COMPRESSION_TF or None) as writer:
                for tile in tiles:
                    writer.write(encode_tile(track_id=tile.track_id + c * OFFSET, tile_index=tile.tile_index,
                                             mel=tile.mel))
                    written += 1
    return written


def train_once(data: Path, out: Path, memory_gb: float, steps: int, epochs: int) -> dict:
    """One ``wavelist train`` in its own process: wall seconds and peak resident memory (GB)."""
    argv = [str(REPO / ".venv" / "bin" / "wavelist"), "train", "--data", str(data), "--out", str(out), "--epochs",
            str(epochs), "--steps-per-epoch", str(steps), "--tiles-in-memory-gb", str(memory_gb), "--verbose", "0"]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_kb = 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak_kb = max(peak_kb, int(next(line.split()[1] for line in status.splitlines()
                                            if line.startswith("VmHWM:"))))
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            pass
        time.sleep(0.2)
    if process.returncode:
        sys.exit(f"train failed (exit {process.returncode}): {process.stderr.read()[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_s": round(time.perf_counter() - started, 1), "peak_gb": round(peak_kb / 1e6, 2),
            "tiles": metrics["tiles"], "read_from_shards": metrics["tiles_read_from_shards"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--scratch", type=Path, required=True, help="a new folder for the copies and the models")
    parser.add_argument("--steps", type=int, default=20, help="pair batches per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    if args.scratch.exists():
        sys.exit(f"--scratch {args.scratch}: exists; give a new folder (this benchmark deletes what it writes)")
    from model.data import tiles_gigabytes
    from storage import files

    try:
        started = time.perf_counter()
        tiles = copy_catalogue(args.data, args.scratch / "data", args.copies)
        print(json.dumps({"copies": args.copies, "tiles": tiles, "copy_s": round(time.perf_counter() - started)}),
              flush=True)
        gigabytes = tiles_gigabytes(tiles, files.load_audio_spec(str(args.data), made_by="wavelist ingest"))
        rows = []
        for mode, memory_gb in (("in memory", 1000.0), ("read from the shards", 0.0)):
            result = {"mode": mode, **train_once(args.scratch / "data", args.scratch / mode.replace(" ", "_"),
                                                 memory_gb, args.steps, args.epochs)}
            print(json.dumps(result), flush=True)
            rows.append(result)
        print(f"\n{args.epochs} epoch(s) of {args.steps} pair batches, then the pass over every tile for the whitening "
              f"and the genre part; tiles {tiles:,} ({gigabytes:.2f} GB as float16)\n")
        print("| tiles held | wall s | peak resident GB |\n|---|---|---|")
        for row in rows:
            print(f"| {row['mode']} | {row['wall_s']} | {row['peak_gb']} |")
    finally:
        shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
