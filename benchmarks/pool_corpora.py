"""Pool corpora in FMA layout (what ``shared/build_music_corpus.py`` writes) into one catalogue.

    python benchmarks/pool_corpora.py OUT CORPUS [CORPUS ...] [--references DIR [DIR ...]]

OUT gets ``fma_metadata/tracks.csv`` (the corpora's rows, in the order given), ``audio/XXX/XXXXXX.mp3`` as
hard links to the corpora's clips (no copy; OUT must be on the same file system) and ``manifest.csv``. Each
corpus numbers its original tracks (``artist.id``) from 1, so the pooled table shifts each corpus's numbers past
the previous one's. The
corpora's clip ids must not overlap (the builder's sets use disjoint id ranges). OUT must be new or empty.
``--references``: each corpus's folder of reference vectors (``shared/reference_embeddings.py``,
``benchmarks/bliss_reference.py``), in the corpora's order; the ``.npz`` files that every folder has are
joined into ``OUT/references`` (a clip's vector does not depend on the other clips, except that ``mfcc_stats``
and ``bliss`` were scaled or centred per corpus).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd


def pool(out: Path, corpora: list[Path]) -> int:
    """Write the pooled corpus into ``out``; returns its number of clips."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out}: not empty; give a new folder")
    tracks = [pd.read_csv(c / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1]) for c in corpora]
    offset = 0
    for table in tracks:  # each corpus numbers its original tracks ("artists") from 1: keep them apart
        table[("artist", "id")] += offset
        offset = int(table[("artist", "id")].max())
    pooled = pd.concat(tracks)
    if pooled.index.duplicated().any():
        raise SystemExit(f"clip ids overlap between the corpora, e.g. {pooled.index[pooled.index.duplicated()][0]}")
    (out / "fma_metadata").mkdir(parents=True)
    pooled.to_csv(out / "fma_metadata" / "tracks.csv")
    manifests = [pd.read_csv(c / "manifest.csv") for c in corpora if (c / "manifest.csv").exists()]
    if manifests:
        pd.concat(manifests).to_csv(out / "manifest.csv", index=False)
    for corpus in corpora:
        for clip in sorted((corpus / "audio").glob("*/*.mp3")):
            target = out / "audio" / clip.parent.name / clip.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(clip, target)
    return len(pooled)


def pool_references(out: Path, folders: list[Path]) -> list[str]:
    """Join the ``.npz`` reference files (ids, X) that every folder has into ``out``; returns their stems."""
    import numpy as np

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
    args = parser.parse_args()
    if args.references and len(args.references) != len(args.corpora):
        parser.error("give one --references folder per corpus, in the same order")
    print(f"{pool(args.out, args.corpora)} clips pooled into {args.out}")
    if args.references:
        print(f"references joined: {', '.join(pool_references(args.out / 'references', args.references))}")


if __name__ == "__main__":
    main()
