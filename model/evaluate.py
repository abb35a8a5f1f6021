"""Compare embedding models on the same data: genre accuracy, neighbour quality, same-track agreement.

    wavelist evaluate --data DATA --models MODEL [MODEL ...] --out REPORT

DATA and MODEL may be local or gs:// folders (copied here first), REPORT too. Writes ``REPORT/evaluation.md``,
``REPORT/evaluation.json`` and ``REPORT/<model>-map2d.png``.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import vectors as recipe
from core.neighbours import DIFFUSION_NEIGHBOURS, diffuse_exact
from schemas import vector_parts
from schemas.flags import FlagParser, whole
from schemas.layout import DataFiles, ModelFiles
from storage import files

log = logging.getLogger(__name__)
K = 10


@dataclass
class TrackVectors:
    """Unit vectors of whole tracks and of two excerpts (first and second half of the tiles)."""

    ids: np.ndarray  # [n]
    full: np.ndarray  # [n, d]
    excerpt_ids: np.ndarray  # [m], tracks with at least two tiles
    excerpt_a: np.ndarray  # [m, d]
    excerpt_b: np.ndarray  # [m, d]


def embed_catalogue(model_dir: str | Path, data_dir: str | Path) -> TrackVectors:
    """Vectors of every track of DATA under the model (in this process, batch by batch), made by the one
    recipe the embed job uses (:mod:`core.vectors`)."""
    from model import data, features
    from model.train import load_embedder

    info = files.load_model_info(model_dir)
    inputs = {part.takes: part.name for part in vector_parts.input_parts(info.parts)}
    embedders = {name: load_embedder(model_dir, info.embedder_file(name)) for name in info.parts}
    joined = {part.name: (lambda x, model=embedders[part.name]: model(x, training=False))
              for part in vector_parts.joined_parts(info.parts)}
    if vector_parts.TILE_INPUT not in inputs:  # one vector per track, from its summary statistics
        ids, values = features.load_features(data_dir)
        full = recipe.track_vectors(info, embedders=joined, **{
            part.name: np.asarray(embedders[part.name](values, training=False))
            for part in vector_parts.input_parts(info.parts)})
        empty = np.zeros((0, full.shape[1]), np.float32)
        return TrackVectors(ids, full, np.zeros(0, np.int64), empty, empty)
    embedder = embedders[inputs[vector_parts.TILE_INPUT]]
    spec = files.load_audio_spec(data_dir, made_by="wavelist ingest")
    spec.require_same(files.load_audio_spec(model_dir, made_by="wavelist train"),
                      what=f"the tiles in {data_dir} (vs the model {model_dir})")
    tiles, track_ids = data.load_tiles(data.all_tile_files(data_dir), spec)
    vectors = np.concatenate([np.asarray(embedder(tiles[i:i + 256].astype(np.float32), training=False))
                              for i in range(0, len(tiles), 256)])
    starts = recipe.track_starts(track_ids)
    ends = np.r_[starts[1:], len(track_ids)]
    tile_part = np.stack([recipe.part_vector(vectors[s:e]) for s, e in zip(starts, ends)])
    two = [(s, e) for s, e in zip(starts, ends) if e - s >= 2]
    excerpt_a = np.stack([recipe.part_vector(vectors[s:s + (e - s) // 2]) for s, e in two]) if two else tile_part[:0]
    excerpt_b = np.stack([recipe.part_vector(vectors[s + (e - s) // 2:e]) for s, e in two]) if two else tile_part[:0]
    ids = track_ids[starts]
    parts = {inputs[vector_parts.TILE_INPUT]: tile_part}
    track_parts = [part for part in vector_parts.input_parts(info.parts) if part.takes == vector_parts.TRACK_INPUT]
    if track_parts:
        feature_ids, values = features.load_features(data_dir)
        rows = [{int(t): i for i, t in enumerate(feature_ids)}[int(t)] for t in ids]
        for part in track_parts:
            parts[part.name] = np.asarray(embedders[part.name](values, training=False))[rows]
    full = recipe.track_vectors(info, embedders=joined, **parts)
    # excerpts keep the tile half only: a track's summary statistics are one row for both halves
    return TrackVectors(ids, full, track_ids[[s for s, _ in two]], excerpt_a, excerpt_b)


def neighbour_quality(vectors: np.ndarray, genres: np.ndarray, artists: np.ndarray, queries: np.ndarray,
                      k: int = K) -> dict[str, float]:
    """Genre precision@k and mean average precision of each query's neighbours; the query itself and
    tracks by the query's artist are not candidates (``artists`` -1 = unknown, never filtered)."""
    sims = vectors[queries] @ vectors.T
    precision, average_precision = [], []
    for row, q in enumerate(queries):
        excluded = np.arange(len(vectors)) == q
        if artists[q] >= 0:
            excluded |= artists == artists[q]
        order = np.argsort(-np.where(excluded, -np.inf, sims[row]), kind="stable")[: len(vectors) - excluded.sum()]
        relevant = genres[order] == genres[q]
        precision.append(relevant[:k].mean())
        hits = np.cumsum(relevant)
        average_precision.append(float((hits / np.arange(1, len(hits) + 1))[relevant].mean()) if hits[-1] else 0.0)
    return {f"genre_p@{k}": float(np.mean(precision)), "genre_map": float(np.mean(average_precision)),
            "queries": int(len(queries))}


def same_track_recall(vectors: TrackVectors, query_ids: set[int], k: int = K) -> dict[str, float]:
    """Share of query tracks whose second-half excerpt is among the k nearest second-half excerpts of
    their first half (all tracks' second halves are candidates)."""
    rows = np.array([i for i, t in enumerate(vectors.excerpt_ids) if int(t) in query_ids], np.int64)
    if len(rows) == 0:
        return {f"same_track_r@{k}": float("nan"), "queries": 0}
    sims = vectors.excerpt_a[rows] @ vectors.excerpt_b.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return {f"same_track_r@{k}": float(np.mean([r in t for r, t in zip(rows, top)])), "queries": int(len(rows))}


def genre_accuracy(vectors: np.ndarray, genres: np.ndarray, splits: np.ndarray) -> dict[str, Any]:
    """A logistic regression on the frozen training-split vectors, scored on the test split."""
    from sklearn.linear_model import LogisticRegression

    from model.train import classification_metrics

    names = sorted(set(genres[genres != ""]))
    index = {g: i for i, g in enumerate(names)}
    train = (splits == "train") & (genres != "")
    test = (splits == "test") & (genres != "")
    if len({*genres[train]}) < 2 or not test.any():
        return {"tracks": int(test.sum())}
    classifier = LogisticRegression(max_iter=2000).fit(vectors[train], [index[g] for g in genres[train]])
    return classification_metrics(np.array([index[g] for g in genres[test]]), classifier.predict(vectors[test]),
                                  names)


def picture(vectors: np.ndarray, genres: np.ndarray, title: str, out: str) -> None:
    """A 2-D t-SNE of the track vectors, coloured by genre, as the PNG file ``out`` (local or remote)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    coords = TSNE(n_components=2, perplexity=min(30.0, (len(vectors) - 1) / 3), metric="cosine", init="pca",
                  random_state=0).fit_transform(vectors) if len(vectors) > 8 else vectors[:, :2]
    figure, axes = plt.subplots(figsize=(7, 6), dpi=100)
    for genre in sorted(set(genres)):
        mask = genres == genre
        axes.scatter(coords[mask, 0], coords[mask, 1], s=10, label=genre or "unknown")
    axes.set_title(title)
    axes.legend(fontsize=7, markerscale=2, loc="best")
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png")
    plt.close(figure)
    files.write_bytes(out, image.getvalue())


def evaluate_model(model: str, data_dir: str, report: str, diffusion: int = DIFFUSION_NEIGHBOURS) -> dict[str, Any]:
    """The scores of the model folder ``model`` (local or remote) on the local DATA folder ``data_dir``, its
    track vectors diffused over their ``diffusion`` nearest as ``wavelist embed`` does (0: not); its 2-D map is
    written into the folder ``report`` (local or remote). The same-track halves are not diffused: they are
    excerpts, not catalogue tracks."""
    with files.read_locally(model) as model_dir:
        info = files.load_model_info(model_dir)
        vectors = embed_catalogue(model_dir, data_dir)
        if diffusion:
            vectors.full = diffuse_exact(vectors.full, diffusion)
        metrics_path = files.join(model_dir, ModelFiles.METRICS)
        classifier = None  # the cnn's own genre classifier, scored by the trainer
        if info.kind == "cnn" and files.exists(metrics_path):
            classifier = files.read_json(metrics_path, made_by="wavelist train").get("test", {})
    rows = files.read_parquet(files.join(data_dir, DataFiles.TRACKS), made_by="wavelist ingest").to_pylist()
    tracks = {r["track_id"]: r for r in rows if r["status"] == "ok"}
    genres = np.array([tracks[int(t)]["genre"] or "" for t in vectors.ids])
    artists = np.array([tracks[int(t)]["artist_id"] if tracks[int(t)]["artist_id"] is not None else -1
                        for t in vectors.ids])
    splits = np.array([tracks[int(t)]["split"] for t in vectors.ids])
    test_queries = np.flatnonzero((splits == "test") & (genres != ""))
    result: dict[str, Any] = {"model": model, "kind": info.kind, "model_id": info.model_id, "diffusion": diffusion}
    result["neighbours"] = neighbour_quality(vectors.full, genres, artists, test_queries)
    result["same_track"] = same_track_recall(vectors, {int(t) for t in vectors.ids[splits == "test"]})
    result["genre_logreg"] = genre_accuracy(vectors.full, genres, splits)
    if classifier is not None:
        result["genre_classifier"] = classifier
    name = posixpath.basename(model.rstrip("/"))
    picture(vectors.full, genres, f"{info.kind} ({info.model_id})", files.join(report, f"{name}-map2d.png"))
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"

    lines = [f"| model | kind | genre accuracy (test) | genre P@{K} | genre MAP | same-track R@{K} |",
             "|---|---|---|---|---|---|"]
    for r in results:
        accuracy = r.get("genre_classifier", {}).get("accuracy", r["genre_logreg"].get("accuracy"))
        lines.append(f"| {posixpath.basename(r['model'].rstrip('/'))} | {r['kind']} | {cell(accuracy)} | "
                     f"{cell(r['neighbours'][f'genre_p@{K}'])} | {cell(r['neighbours']['genre_map'])} | "
                     f"{cell(r['same_track'][f'same_track_r@{K}'])} |")
    queries = results[0]["neighbours"]["queries"] if results else 0
    lines += ["", f"Queries: the {queries} test-split tracks with a genre; candidates: every track, minus the "
              "query's artist. Genre accuracy: the CNN's own classifier (mean of tile probabilities) for `cnn`, "
              "a logistic regression on the frozen training-split vectors for the others. Same-track: the first "
              "half of a test track's tiles against the second halves of all tracks."]
    diffusion = results[0].get("diffusion") if results else 0
    lines.append(f"Track vectors diffused over their {diffusion} nearest, as wavelist embed does (--diffusion 0: not); "
                 "the same-track halves are not." if diffusion else "Track vectors not diffused (--diffusion 0).")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags of ``wavelist evaluate``, checked (a mistake is one line, exit 2)."""
    parser = FlagParser(prog="wavelist evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="output folder of wavelist ingest")
    parser.add_argument("--models", required=True, nargs="+", help="model folders to compare")
    parser.add_argument("--out", required=True, help="report folder (local or gs://)")
    parser.add_argument("--diffusion", type=whole(0, 10_000), default=DIFFUSION_NEIGHBOURS, metavar="M",
                        help=f"diffuse the track vectors over their M nearest, as wavelist embed does (default "
                        f"{DIFFUSION_NEIGHBOURS}; 0: off)")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    files.check_inputs(args.out, [args.data, *args.models])
    results = []
    with files.read_locally(args.data) as data_dir:
        for model in args.models:
            log.info("evaluate %s", model)
            results.append(evaluate_model(model, data_dir, args.out, args.diffusion))
    files.write_text(files.join(args.out, "evaluation.json"), json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    files.write_text(files.join(args.out, "evaluation.md"), table)
    print(table)
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run()
