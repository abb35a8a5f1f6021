"""bliss's vectors of an FMA-layout corpus as a reference for benchmarks/quality.py: OUT_DIR/bliss.npz (ids, X).

    python -m benchmarks.bliss_reference CORPUS OUT_DIR [--jobs 2]

Run it in the references' own environment (``pip install bliss-audio``; never wavelist's). Each clip is
``bliss_audio.Song(path).analysis`` (bliss-rs: tempo, zero-crossing rate, spectral centroid / rolloff /
flatness, loudness, chroma: 23 numbers, each already scaled to about [-1, 1]). bliss ranks by Euclidean
distance; quality.py scores cosines, so the vectors are centred on the corpus mean (Euclidean ranks of
centred vectors and cosine ranks agree when norms are alike; the prototype's notes found the two close).
"""
from __future__ import annotations

import argparse
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd


def analyse(path: str) -> np.ndarray:
    from bliss_audio import Song

    return np.asarray(Song(path).analysis, np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    ids = pd.read_csv(args.corpus / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1]).index.to_numpy(np.int64)
    paths = [str(args.corpus / "audio" / f"{i:06d}"[:3] / f"{i:06d}.mp3") for i in ids]
    started = time.perf_counter()
    with Pool(args.jobs) as pool:
        X = np.stack(pool.map(analyse, paths, chunksize=8))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "bliss.npz", ids=ids, X=(X - X.mean(axis=0)).astype(np.float32))
    print(f"bliss: {len(ids)} clips, {X.shape[1]} features, {time.perf_counter() - started:.0f} s with {args.jobs} jobs")


if __name__ == "__main__":
    main()
