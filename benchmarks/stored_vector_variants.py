"""Training-free variants of the label-free part, scored on a run's stored vectors (no training, no embed job).

    python -m benchmarks.stored_vector_variants CORPUS WORKDIR --data DATA [--references DIR] [--ab-repeats FILE]
        [--name NAME]

WORKDIR is a ``quality.py`` work folder whose ``tables/undiffused.parquet`` and ``model/`` an embed with the
default diffusion wrote; DATA the ingest output it embedded (its tiles and summary statistics). The label-free
part (the vector without its genre part) is scored as embed gives it (diffused over its 5 nearest, power 3) and
against these variants of it, each diffused the same way:

    pseudo-genres K, W    a genre part learnt from K k-means clusters of the catalogue instead of labels
                          (the probe of ``model.genre_part`` on the cluster ids, weight W)
    local scaling k       CSLS hubness reduction of the cosines (2 cos - r_x - r_y, r = the mean cosine to the k
                          nearest), a re-ranking rather than a vector
    halves on own graphs  each half diffused over its own nearest, then joined
    union of the graphs   the joined vector diffused over the union of each half's 5 nearest
    mel-band profile      each band's mean and deviation over the whole clip (from DATA's tiles), whitened, joined
                          to the statistics before their whitening, or as a third part

Printed: a Markdown table of source P@10 and same-track R@10 (``shared/similarity_metrics.py``, test-split
queries) with each variant's paired bootstrap difference from the label-free part as embedded, and MusiCNN MTT's
when ``mtt_musicnn.npz`` is among the references.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import quality  # the judge's metrics, per-query values and the paired bootstrap
from core.neighbours import DIFFUSION_NEIGHBOURS, DIFFUSION_POWER, diffuse, top_k_cosine
from core.vectors import track_starts, unit
from schemas.layout import ModelFiles, TableFiles
from schemas.model_info import GENRES, ModelInfo

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter (imported later, in functions)

AS_EMBEDDED = "label-free part, as embedded (diffusion 5, power 3)"


def as_embedded(vectors: np.ndarray) -> np.ndarray:
    """What ``wavelist embed`` does to a vector: diffusion over its own nearest."""
    return quality.diffused(vectors, DIFFUSION_NEIGHBOURS, DIFFUSION_POWER)


def pseudo_genre_part(label_free: np.ndarray, clusters: int, weight: float) -> np.ndarray:
    """The label-free vector with a genre part whose genres are k-means clusters of the catalogue."""
    from sklearn.cluster import KMeans

    from core.vectors import join_extra
    from model.genre_part import fit_probe

    labels = KMeans(clusters, n_init=4, random_state=0).fit(label_free).labels_
    kernel, bias = fit_probe(label_free, labels, clusters)
    logits = label_free @ kernel + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    return join_extra(label_free, np.sqrt(probabilities), weight)


def local_scaling(vectors: np.ndarray, k: int) -> np.ndarray:
    """CSLS similarities ``[n, n]`` of unit ``vectors``: ``2 cos(x, y) - r_x - r_y``."""
    similarities = vectors @ vectors.T
    np.fill_diagonal(similarities, -np.inf)
    r = np.sort(similarities, axis=1)[:, -k:].mean(1)
    np.fill_diagonal(similarities, 1.0)
    return 2 * similarities - r[None, :] - r[:, None]


def union_graph_diffusion(label_free: np.ndarray, halves: list[np.ndarray], neighbours: int) -> np.ndarray:
    """The joined vector diffused over the union of each half's ``neighbours`` nearest (weights: joined cosines)."""
    rows = np.arange(len(label_free))
    lists = np.sort(np.concatenate([top_k_cosine(h, rows, h, rows, neighbours)[0] for h in halves], 1), 1)
    lists = np.where(np.c_[np.ones(len(lists), bool), lists[:, 1:] != lists[:, :-1]], lists, -1)  # once each
    similarities = np.einsum("nd,nmd->nm", label_free, label_free[np.maximum(lists, 0)])
    return diffuse(label_free, lists, similarities, power=DIFFUSION_POWER)


def mel_band_profiles(data_dir: Path, track_ids: np.ndarray) -> np.ndarray:
    """Each track's mean and standard deviation of every mel band over all its tiles' frames ``[n, 2 * mels]``."""
    from model import data
    from storage import files

    spec = files.load_audio_spec(str(data_dir), made_by="wavelist ingest")
    tiles, tile_ids = data.load_tiles(data.all_tile_files(str(data_dir)), spec)
    starts = track_starts(tile_ids)
    profiles = {}
    for start, end in zip(starts, np.r_[starts[1:], len(tile_ids)]):
        frames = np.asarray(tiles[start:end], np.float32).transpose(1, 0, 2).reshape(tiles.shape[1], -1)
        profiles[int(tile_ids[start])] = np.concatenate([frames.mean(1), frames.std(1)])
    return np.stack([profiles[int(t)] for t in track_ids])


def variants(label_free: np.ndarray, tile_half: np.ndarray, statistics: np.ndarray, profiles: np.ndarray,
             part_dim: int) -> dict[str, np.ndarray | tuple[str, np.ndarray]]:
    """Each variant's diffused vectors, or ``("similarities", [n, n])`` for a re-ranking."""
    from model.features import whitened_features_embedder

    def whitened(values: np.ndarray) -> np.ndarray:
        return unit(np.asarray(whitened_features_embedder(values, part_dim)(values, training=False)))

    statistics_half = whitened(statistics)
    out: dict = {AS_EMBEDDED: as_embedded(label_free)}
    for clusters, weight in ((16, 1 / 3), (32, 0.2)):
        out[f"pseudo-genres {clusters} clusters, weight {weight:.2f}"] = as_embedded(
            pseudo_genre_part(label_free, clusters, weight))
    for k in (5, 10, 20):
        out[f"local scaling (CSLS) of the diffused cosines, k {k}"] = ("similarities", local_scaling(out[AS_EMBEDDED], k))
    out["halves diffused on their own graphs"] = unit(np.concatenate([as_embedded(tile_half),
                                                                      as_embedded(statistics_half)], 1))
    out["union of the halves' 5-nearest graphs"] = union_graph_diffusion(label_free, [tile_half, statistics_half], 5)
    out["statistics + mel-band profile, whitened together"] = as_embedded(
        np.concatenate([tile_half, whitened(np.concatenate([statistics, profiles], 1))], 1))
    out["mel-band profile as a third part"] = as_embedded(np.concatenate([tile_half, statistics_half,
                                                                           whitened(profiles)], 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the ingest output WORKDIR's tables were embedded from")
    parser.add_argument("--references", type=Path, help="folder of reference .npz files (default WORKDIR/references)")
    parser.add_argument("--ab-repeats", type=Path, default=quality.SHARED / "dev_ab_repeats.txt")
    parser.add_argument("--name", default="", help="the run's name in the table's rows")
    args = parser.parse_args()
    from model import features

    metrics = quality.similarity_metrics()
    tracks = metrics.load_tracks(str(args.corpus / "fma_metadata" / "tracks.csv"))
    repeats = metrics.load_repeat_clips(str(args.ab_repeats))
    info = ModelInfo.from_json((args.workdir / "model" / ModelFiles.INFO).read_text())
    undiffused = args.workdir / "tables" / TableFiles.UNDIFFUSED
    if not info.has(GENRES) or not undiffused.exists():
        sys.exit(f"{args.workdir}: needs a model with a genre part and the {TableFiles.UNDIFFUSED} of an embed with "
                 "the diffusion (the label-free part is the vector without its genre part)")
    ids, vectors = metrics.load_embeddings(str(undiffused))
    label_free = unit(vectors[:, :-len(info.genres)])
    tile_dim = info.part_dims[0]
    feature_ids, values = features.load_features(str(args.data))
    statistics = values[pd.Index(feature_ids).get_indexer(ids)]
    scored = variants(label_free, unit(label_free[:, :tile_dim]), statistics, mel_band_profiles(args.data, ids),
                      tile_dim)
    values_by_name = {}
    for name, result in scored.items():
        if isinstance(result, tuple):
            order = pd.Index(ids).get_indexer(tracks.index)
            values_by_name[name] = quality.per_query_of_similarities(metrics, result[1][np.ix_(order, order)], tracks,
                                                                     repeats)
        else:
            values_by_name[name] = quality.per_query(metrics, ids, result, tracks, repeats)
    references = args.references or args.workdir / "references"
    if (references / "mtt_musicnn.npz").exists():
        values_by_name[quality.REFERENCES["mtt_musicnn"]] = quality.per_query(
            metrics, *metrics.load_embeddings(str(references / "mtt_musicnn.npz")), tracks, repeats)
    intervals = quality.bootstrap(values_by_name, AS_EMBEDDED)
    print(f"| {args.name or args.workdir.name}: variant | source P@10 | same-track R@10 | P@10: it minus as embedded "
          "| R@10: it minus as embedded |\n|---|---|---|---|---|")
    for name in values_by_name:
        row = intervals[name]
        cells = [f"{row[m][0]:.3f}" for m in ("source_p10", "same_track_r10")]
        diffs = ["" if name == AS_EMBEDDED else  # the bootstrap gives as-embedded minus it; printed the other way
                 f"{-row[f'{m}_diff'][0]:+.3f} [{-row[f'{m}_diff'][2]:+.2f}, {-row[f'{m}_diff'][1]:+.2f}]"
                 for m in ("source_p10", "same_track_r10")]
        print(f"| {name} | {' | '.join(cells)} | {' | '.join(diffs)} |")


if __name__ == "__main__":
    main()
