"""Pool corpora in FMA layout (what ``shared/build_music_corpus.py`` writes) into one catalogue.

    python -m benchmarks.pool_corpora OUT CORPUS [CORPUS ...] [--references DIR [DIR ...]] [--fraction F]

OUT gets ``fma_metadata/tracks.csv`` (the corpora's rows, in the order given), ``audio/XXX/XXXXXX.mp3`` as
hard links to the corpora's clips (no copy; OUT must be on the same file system) and ``manifest.csv``. Each
corpus numbers its original tracks (``artist.id``) from 1, so the pooled table shifts each corpus's numbers past
the previous one's. The
corpora's clip ids must not overlap (the builder's sets use disjoint id ranges). OUT must be new or empty.
``--fraction F``: only the original tracks (both clips of each) whose stable hash falls in the first F of the
range: a smaller catalogue of the same music, for a curve of quality against catalogue size.
``--references``: each corpus's folder of reference vectors (``shared/reference_embeddings.py``,
``benchmarks/bliss_reference.py``), in the corpora's order; the ``.npz`` files that every folder has are
joined into ``OUT/references`` (a clip's vector does not depend on the other clips, except that ``mfcc_stats``
and ``bliss`` were scaled or centred per corpus).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd


def pool(out: Path, corpora: list[Path], fraction: float = 1.0) -> int:
    """Write the pooled corpus into ``out`` (the ``fraction`` of its original tracks that :func:`kept` keeps);
    returns its number of clips."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out}: not empty; give a new folder")
    tracks = [pd.read_csv(c / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1]) for c in corpora]
    offset = 0
    for table in tracks:  # each corpus numbers its original tracks ("artists") from 1: keep them apart
        table[("artist", "id")] += offset
        offset = int(table[("artist", "id")].max())
    pooled = pd.concat(tracks)
    pooled = pooled[kept(pooled[("artist", "id")].to_numpy(), fraction)]
    if pooled.index.duplicated().any():
        raise SystemExit(f"clip ids overlap between the corpora, e.g. {pooled.index[pooled.index.duplicated()][0]}")
    (out / "fma_metadata").mkdir(parents=True)
    pooled.to_csv(out / "fma_metadata" / "tracks.csv")
    manifests = [pd.read_csv(c / "manifest.csv") for c in corpora if (c / "manifest.csv").exists()]
    if manifests:
        pd.concat(manifests).to_csv(out / "manifest.csv", index=False)
    for corpus in corpora:
        for clip in sorted((corpus / "audio").glob("*/*.mp3")):
            if int(clip.stem) not in pooled.index:
                continue
            target = out / "audio" / clip.parent.name / clip.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(clip, target)
    return len(pooled)


def kept(track_numbers: np.ndarray, fraction: float) -> np.ndarray:
    """Which original tracks a ``fraction`` keeps: those whose stable hash (splitmix-style, of the number)
    falls in the first ``fraction`` of the range, so a smaller fraction keeps a subset of a larger one's."""
    with np.errstate(over="ignore"):
        mixed = np.asarray(track_numbers, np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return (mixed >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction


def pool_references(out: Path, folders: list[Path]) -> list[str]:
    """Join the ``.npz`` reference files (ids, X) that every folder has into ``out``; returns their stems."""
    stems = sorted(set.intersection(*({f.stem for f in folder.glob("*.npz")} for folder in folders)))
    out.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        parts = [np.load(folder / f"{stem}.npz") for folder in folders]
        np.savez(out / f"{stem}.npz", ids=np.concatenate([p["ids"] for p in parts]),
                 X=np.concatenate([p["X"] for p in parts]))
    return stems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("corpora", type=Path, nargs="+")
    parser.add_argument("--references", type=Path, nargs="+", default=[])
    parser.add_argument("--fraction", type=float, default=1.0, help="keep this share of the original tracks")
    args = parser.parse_args()
    if args.references and len(args.references) != len(args.corpora):
        parser.error("give one --references folder per corpus, in the same order")
    print(f"{pool(args.out, args.corpora, args.fraction)} clips pooled into {args.out}")
    if args.references:
        print(f"references joined: {', '.join(pool_references(args.out / 'references', args.references))}")


if __name__ == "__main__":
    main()
