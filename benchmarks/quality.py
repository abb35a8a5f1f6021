"""Does nearness mean "sounds alike"? wavelist's default model against reference embeddings, on a corpus.

    python -m benchmarks.quality CORPUS WORKDIR [--references DIR] [--ab-repeats FILE] [--data DATA] [--train-data DATA]
        [--train-flags "..."] [--embed-flags "..."] [--diffusion M,POWER] [--ours NAME] [--skip-pipeline]

CORPUS is in FMA layout (``fma_metadata/tracks.csv``, ``audio/XXX/XXXXXX.mp3``), e.g. what
``shared/build_music_corpus.py`` builds. The script runs the user's own commands (``wavelist ingest``,
``wavelist train`` with the default model, ``wavelist embed``) into WORKDIR, times them, and scores
``WORKDIR/tables/embeddings.parquet`` with ``shared/similarity_metrics.py`` beside the reference embeddings
found in ``--references`` (``.npz`` files written by ``shared/reference_embeddings.py``: ``mfcc_stats``,
``musicnn``, ``mtt_musicnn``, ``random``; missing ``mfcc_stats`` and ``random`` are computed here, MusiCNN needs
its own environment, see the issue). Noise: a paired bootstrap over the corpus's original tracks (1,000
resamples of the query tracks); a difference counts only when its 95 % interval excludes zero.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.neighbours import diffuse, diffuse_exact, top_k_cosine
from core.vectors import join_extra, unit
from schemas.layout import ModelFiles, TableFiles
from schemas.model_info import GENRES, ModelInfo

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCES = {"mfcc_stats": "librosa summary statistics (reference_embeddings.py mfcc)",
              "musicnn": "MusiCNN, Million Song Dataset", "mtt_musicnn": "MusiCNN, MagnaTagATune",
              "bliss": "bliss (bliss-audio, benchmarks/bliss_reference.py)", "random": "random vectors"}
K = 10


def similarity_metrics():
    """The shared metrics script as a module (it is the judge; nothing here re-defines its metrics)."""
    spec = importlib.util.spec_from_file_location("similarity_metrics", SHARED / "similarity_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_step(name: str, argv: list[str], log: Path) -> float:
    """Run one wavelist command, its output to ``log``; returns the wall time in seconds."""
    started = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run([str(REPO / ".venv" / "bin" / "wavelist"), *argv], stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"{name} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - started


def per_query(metrics, ids: np.ndarray, X: np.ndarray, tracks: pd.DataFrame, repeats: set[int]) -> dict:
    """Each test query's source P@10 and same-track hit@10, by the shared script's definitions (its
    ``evaluate`` gives only the means; :func:`main` checks that these means equal them)."""
    X = X[pd.Index(ids).get_indexer(tracks.index)]
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return per_query_of_similarities(metrics, X @ X.T, tracks, repeats)


def per_query_of_similarities(metrics, S: np.ndarray, tracks: pd.DataFrame, repeats: set[int]) -> dict:
    """:func:`per_query` for a similarity matrix ``S`` ``[n, n]`` whose rows and columns follow ``tracks``
    (a re-ranking that is not a cosine of vectors)."""
    n = len(S)
    own = np.eye(n, dtype=bool)
    source, track = tracks["source"].to_numpy(), tracks["track"].to_numpy()
    same_track = (track[:, None] == track[None, :]) & ~own
    relevant = metrics.ranked_relevance(S, (source[:, None] == source[None, :]) & ~same_track & ~own, same_track | own)
    first_sibling = metrics.ranked_relevance(S, same_track, own).argmax(1) + 1
    test = (tracks["split"] == "test").to_numpy()
    source_q = test & (tracks["source"].map(tracks.groupby("source")["track"].nunique()).to_numpy() >= 3)
    track_q = test & same_track.any(1) & ~tracks.index.isin(list(repeats))
    return {"source_p10": pd.Series(relevant[source_q, :K].mean(1), index=track[source_q]),
            "same_track_r10": pd.Series((first_sibling[track_q] <= K).astype(float), index=track[track_q])}


def diffused(X: np.ndarray, neighbours: int, power: float, reciprocal: bool = False) -> np.ndarray:
    """``X`` after :func:`core.neighbours.diffuse` over its exact ``neighbours``-nearest graph (what
    ``wavelist embed --diffusion`` does in the job), for any embedding, ours or a reference's; ``reciprocal``:
    only neighbours that have the track among their own ``neighbours`` nearest count."""
    X = unit(X)
    if not reciprocal:
        return diffuse_exact(X, neighbours, power)
    rows = np.arange(len(X))
    neighbour_rows, sims = top_k_cosine(X, rows, X, rows, neighbours)
    mutual = (neighbour_rows[neighbour_rows] == rows[:, None, None]).any(axis=2)
    return diffuse(X, np.where(mutual, neighbour_rows, -1), sims, power=power)


def bootstrap(values: dict[str, dict[str, pd.Series]], ours: str, resamples: int = 1000, seed: int = 0) -> dict:
    """95 % intervals of each embedding's mean and of (ours - it), resampling query tracks (both clips of
    a track go together), paired: every embedding sees the same resample."""
    rng = np.random.default_rng(seed)
    out: dict = {}
    for metric in ("source_p10", "same_track_r10"):
        groups = np.unique(values[ours][metric].index)
        draws = [rng.choice(groups, len(groups)) for _ in range(resamples)]
        for name, by_metric in values.items():
            series = by_metric[metric]
            sums = series.groupby(level=0).sum()
            counts = series.groupby(level=0).count()
            means = np.array([sums[d].sum() / counts[d].sum() for d in draws])
            out.setdefault(name, {})[metric] = (float(series.mean()), *np.percentile(means, [2.5, 97.5]).tolist())
            out[name][f"{metric}_draws"] = means
        for name in values:
            diff = out[ours][f"{metric}_draws"] - out[name][f"{metric}_draws"]
            out[name][f"{metric}_diff"] = (float(out[ours][metric][0] - out[name][metric][0]),
                                           *np.percentile(diff, [2.5, 97.5]).tolist())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--references", type=Path, help="folder of reference .npz files (default WORKDIR/references)")
    parser.add_argument("--ab-repeats", type=Path, default=SHARED / "dev_ab_repeats.txt")
    parser.add_argument("--train-flags", default="", help="extra flags for wavelist train (default: none)")
    parser.add_argument("--embed-flags", default="", help="extra flags for wavelist embed (default: none)")
    parser.add_argument("--data", type=Path, help="an ingest output of CORPUS to reuse (skips wavelist ingest)")
    parser.add_argument("--train-data", type=Path, help="train on this ingest output (e.g. of a part of CORPUS: "
                        "pool_corpora.py --fraction) and embed all of CORPUS with it")
    parser.add_argument("--diffusion", action="append", default=[], metavar="M,POWER[,reciprocal]",
                        help="also score each embedding after diffusion over its M nearest (repeatable); ours, "
                        "if embed diffused them (its default), are scored as embedded and before it")
    parser.add_argument("--join", action="append", default=[], metavar="STEM,WEIGHT",
                        help="also score our vectors joined with a reference's (what wavelist embed --extra-vectors "
                        "STEM.parquet --extra-weight WEIGHT computes), e.g. musicnn,0.5 (repeatable)")
    parser.add_argument("--genre-weight", type=float, action="append", default=[],
                        help="also score the default with its genre part given this share of the cosine (repeatable)")
    parser.add_argument("--ours", default="wavelist default",
                        help="the row the differences are taken against: the first name that starts with this")
    parser.add_argument("--only-given-references", action="store_true",
                        help="score the references found in --references only (compute no missing one)")
    parser.add_argument("--skip-pipeline", action="store_true", help="score WORKDIR/tables as it is")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    if not args.skip_pipeline:
        meta, audio = args.corpus / "fma_metadata", args.corpus / "audio"
        data = args.data or work / "data"
        if not args.data:
            timings["ingest_s"] = run_step("ingest", ["ingest", "--fma-metadata", str(meta), "--audio-dir", str(audio),
                                                      "--out", str(data), "--overwrite"], work / "ingest.log")
        timings["train_s"] = run_step("train", ["train", "--data", str(args.train_data or data), "--out", str(work / "model"),
                                                "--overwrite", "--verbose", "2", *shlex.split(args.train_flags)],
                                      work / "train.log")
        timings["embed_s"] = run_step("embed", ["embed", "--data", str(data), "--model", str(work / "model"),
                                                "--out", str(work / "tables"), "--overwrite",
                                                *shlex.split(args.embed_flags)], work / "embed.log")
    references = args.references or work / "references"
    references.mkdir(parents=True, exist_ok=True)
    for kind, file in (("mfcc", "mfcc_stats.npz"), ("random", "random.npz")):
        if not (references / file).exists() and not args.only_given_references:
            subprocess.run([sys.executable, str(SHARED / "reference_embeddings.py"), kind, str(args.corpus),
                            str(references), "--jobs", "2"], check=True)

    metrics = similarity_metrics()
    tracks = metrics.load_tracks(str(args.corpus / "fma_metadata" / "tracks.csv"))
    repeats = metrics.load_repeat_clips(str(args.ab_repeats))
    model_info = ModelInfo.from_json((work / "model" / ModelFiles.INFO).read_text())
    ours = f"wavelist default ({model_info.kind}, {model_info.input})"
    embeddings = {ours: metrics.load_embeddings(str(work / "tables" / TableFiles.EMBEDDINGS))}
    diffusion = json.loads((work / "tables" / "summary.json").read_text()).get("diffusion")
    as_embedded = ((lambda X: diffuse_exact(unit(X), diffusion["neighbours"], diffusion["power"])) if diffusion
                   else (lambda X: X))  # what embed does to any vector: the label-free one gets its own graph
    if diffusion:
        embeddings[f"{ours} before the diffusion (--diffusion 0)"] = metrics.load_embeddings(
            str(work / "tables" / TableFiles.UNDIFFUSED))
    if model_info.has(GENRES):  # also what a catalogue without labels gets
        ids, X = embeddings[f"{ours} before the diffusion (--diffusion 0)" if diffusion else ours]
        label_free = X[:, :-len(model_info.genres)]  # the halves; the genre part is the last columns
        embeddings["wavelist, the same model's label-free part alone (the --no-genres vector)"] = (
            ids, as_embedded(label_free))
        if diffusion:
            embeddings["wavelist, the label-free part before the diffusion"] = (ids, label_free)
        genre_part = X[:, -len(model_info.genres):]
        for weight in args.genre_weight:  # the same parts, the genre part given another share of the cosine
            embeddings[f"wavelist default with the genre part at weight {weight:g}"] = (
                ids, as_embedded(join_extra(label_free, genre_part, weight)))  # the same parts-by-weight join
    for stem, label in REFERENCES.items():
        if (references / f"{stem}.npz").exists():
            embeddings[label] = metrics.load_embeddings(str(references / f"{stem}.npz"))

    for setting in args.join:
        stem, weight = setting.split(",")
        ref_ids, ref_X = metrics.load_embeddings(str(references / f"{stem}.npz"))
        for name, (ids, X) in list(embeddings.items()):
            if name.startswith("wavelist"):
                rows = pd.Index(ref_ids).get_indexer(ids)
                if (rows < 0).any():
                    sys.exit(f"--join {stem}: no vector for {int((rows < 0).sum())} of our tracks")
                extra = ref_X[rows]
                embeddings[f"{name} + {REFERENCES.get(stem, stem)} joined (weight {weight})"] = (
                    ids, join_extra(X, extra, float(weight)))
    already_diffused = {name for name in embeddings if name.startswith("wavelist") and "before the diffusion" not in name
                        } if diffusion else set()  # --diffusion scores the others as embed's default diffuses ours
    for setting in args.diffusion:
        m, power, *mutual = setting.split(",")
        for name, (ids, X) in list(embeddings.items()):
            if "+ diffusion" not in name and "random" not in name and name not in already_diffused:
                embeddings[f"{name} + diffusion ({m} {'mutual ' if mutual else ''}neighbours, power {power})"] = (
                    ids, diffused(X, int(m), float(power), reciprocal=bool(mutual)))
    values, shared_means = {}, {}
    for name, (ids, X) in embeddings.items():
        shared_means[name] = metrics.evaluate(ids, X, tracks, repeats)["test"]
        values[name] = per_query(metrics, ids, X, tracks, repeats)
        for metric in ("source_p10", "same_track_r10"):  # the bootstrap's per-query values are the judge's
            assert abs(values[name][metric].mean() - shared_means[name][metric]) < 1e-9, (name, metric)
    ours = next((name for name in embeddings if name.startswith(args.ours)), None)
    if ours is None:
        sys.exit(f"--ours {args.ours!r}: no embedding's name starts with it; names: {list(embeddings)}")
    intervals = bootstrap(values, ours)

    n_source, n_track = shared_means[ours]["n_source_q"], shared_means[ours]["n_track_q"]
    print(json.dumps({"corpus": str(args.corpus), **timings, "model": model_info.model_id}))
    print(f"\nTest-split queries: {n_source} for source, {n_track} for same-track; 95 % bootstrap intervals "
          f"over original tracks.\n")
    print("| embedding | source P@10 | same-track R@10 | source P@10: ours minus it | same-track R@10: ours minus it |")
    print("|---|---|---|---|---|")
    for name in embeddings:
        row = intervals[name]
        cells = [f"{row[m][0]:.3f} [{row[m][1]:.2f}, {row[m][2]:.2f}]" for m in ("source_p10", "same_track_r10")]
        diffs = [("" if name == ours else
                  f"{row[f'{m}_diff'][0]:+.3f} [{row[f'{m}_diff'][1]:+.2f}, {row[f'{m}_diff'][2]:+.2f}]"
                  f"{' beaten' if row[f'{m}_diff'][1] > 0 else ''}") for m in ("source_p10", "same_track_r10")]
        print(f"| {name} | {' | '.join(cells)} | {' | '.join(diffs)} |")


if __name__ == "__main__":
    main()
