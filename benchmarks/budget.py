"""What the analysis budget costs in quality on full-length songs: each budget against every tile, one corpus.

    python -m benchmarks.budget HALVES WORK [--budgets 0x3,8x3,4x3,2x3] [--train-flags "..."]

HALVES is the two-halves corpus of ``benchmarks/full_length_corpus.py`` (FMA layout; each song cut into two
halves of the same "artist"). For each budget EXCERPTSxTILES (``0x3``: every tile, the reference) the script
runs the user's commands into WORK/BUDGET: ``wavelist ingest --excerpts E --excerpt-tiles T``, ``wavelist
train`` at its defaults, ``wavelist embed``; a step whose output is already there is reused. Then it scores every
budget's embeddings with ``shared/similarity_metrics.py``'s definitions on the test split: source P@10 (the
neighbours of a half come from its source, the other half of its song excluded) and same-song R@10 (a half
finds the other half of its song among its 10 nearest), with 95 % paired bootstrap intervals over songs of
each budget's difference from every tile (``benchmarks/quality.py``'s bootstrap), and the same figures over
every query (the training split's too: a second look with more queries, not a held-out one). Also prints each
budget's tiles, DATA bytes per song and wall time per step.
"""
from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

from benchmarks.quality import bootstrap, per_query, run_step, similarity_metrics
from schemas.layout import TableFiles


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def run_budget(halves: Path, work: Path, budget: str, train_flags: str) -> dict:
    """Ingest, train and embed ``halves`` at ``budget`` into ``work/budget`` (reusing finished steps)."""
    excerpts, tiles = budget.split("x")
    folder = work / budget
    folder.mkdir(parents=True, exist_ok=True)
    data, model, tables = folder / "data", folder / "model", folder / "tables"
    steps = {
        "ingest": (data, ["ingest", "--fma-metadata", str(halves / "fma_metadata"), "--audio-dir", str(halves / "audio"),
                          "--out", str(data), "--excerpts", excerpts, "--excerpt-tiles", tiles]),
        "train": (model, ["train", "--data", str(data), "--out", str(model), "--verbose", "0",
                          *shlex.split(train_flags)]),
        "embed": (tables, ["embed", "--data", str(data), "--model", str(model), "--out", str(tables)]),
    }
    timings = {}
    for name, (out, argv) in steps.items():
        if not (out / "_SUCCESS").exists():
            timings[f"{name}_s"] = round(run_step(name, argv, folder / f"{name}.log"), 1)
    summary = json.loads((data / "summary.json").read_text())
    return {"budget": budget, "tiles": summary["tiles"], "tracks": summary["accepted"],
            "data_bytes_per_track": folder_bytes(data) / summary["accepted"], **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("halves", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--budgets", default="0x3,8x3,4x3,2x3", help="EXCERPTSxTILES, comma-separated; 0x3 first")
    parser.add_argument("--train-flags", default="", help="extra flags for wavelist train (default: none)")
    args = parser.parse_args()
    budgets = args.budgets.split(",")
    started = time.perf_counter()
    runs = [run_budget(args.halves, args.work, budget, args.train_flags) for budget in budgets]
    for run in runs:
        print(json.dumps(run))
    metrics = similarity_metrics()
    tracks = metrics.load_tracks(str(args.halves / "fma_metadata" / "tracks.csv"))
    repeats = metrics.load_repeat_clips(str(args.halves / "no_repeats.txt"))
    values, every_query = {}, {}
    for budget in budgets:
        ids, X = metrics.load_embeddings(str(args.work / budget / "tables" / TableFiles.EMBEDDINGS))
        values[budget] = per_query(metrics, ids, X, tracks, repeats)
        every_query[budget] = metrics.evaluate(ids, X, tracks, repeats)["all"]  # train split too: a second look
    intervals = bootstrap(values, ours=budgets[0])
    n_source, n_track = (len(values[budgets[0]][m]) for m in ("source_p10", "same_track_r10"))
    print(f"\n{n_source} source queries, {n_track} same-song queries (test split); 95 % paired bootstrap over songs; "
          f"{time.perf_counter() - started:.0f} s in all\n")
    print("| budget (excerpts x tiles) | tiles | DATA per song | source P@10 | same-song R@10 | "
          "P@10 minus every tile | R@10 minus every tile | all queries: source P@10, same-song MRR |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        row = intervals[run["budget"]]
        cells = [f"{row[m][0]:.3f} [{row[m][1]:.2f}, {row[m][2]:.2f}]" for m in ("source_p10", "same_track_r10")]
        # bootstrap() takes differences as reference minus budget: turned around, a budget below it is negative
        diffs = [f"{-row[f'{m}_diff'][0]:+.3f} [{-row[f'{m}_diff'][2]:+.2f}, {-row[f'{m}_diff'][1]:+.2f}]"
                 for m in ("source_p10", "same_track_r10")] if run["budget"] != budgets[0] else ["", ""]
        every = every_query[run["budget"]]
        print(f"| {run['budget']} | {run['tiles']} | {run['data_bytes_per_track'] / 1e6:.2f} MB | "
              f"{' | '.join(cells)} | {' | '.join(diffs)} | {every['source_p10']:.3f}, {every['same_track_mrr']:.3f} |")


if __name__ == "__main__":
    main()
