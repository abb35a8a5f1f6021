"""The catalogue map's methods at scale: time and how well each keeps neighbourhoods (issue 34).

    python -m benchmarks.map_methods [--sizes 100000 1000000] [--tables /work/runs/library/tables ...]
                                     [--methods tsne-20000 tsne-5000 umap-20000 umap-50000 umap-all]
                                     [--all-up-to 100000]
                                     [--queries 2000]

Methods: ``tsne-S`` / ``umap-S`` lay out the ``S`` tracks of smallest ``sample_rank`` (sklearn's 3-D Barnes-Hut
t-SNE, or 3-D UMAP on their exact 15-nearest graph by faiss) and place every other track at the mean position
of its 5 nearest sampled tracks (``core.neighbours.map_coordinates``; ``tsne-20000`` is the embed job's map
before issue 34, the baseline). ``umap-all`` is UMAP of the whole catalogue on a 15-nearest table the job
already stores (computed here by faiss, exact, and timed apart); skipped above ``--all-up-to`` tracks.

Data: 64-d clustered unit vectors from ``playlists.synthetic`` (64 styles) at each of ``--sizes``, and the
embeddings of each ``--tables`` folder (read only). Printed per method and data set: wall and CPU seconds of
this process (all its threads) and the neighbourhood figure: over ``--queries`` tracks drawn from the WHOLE
catalogue, the share of each one's 10 nearest in the embedding (cosine) that are among its 10 nearest on the
map (Euclidean), averaged. All rows of one run share the machine's load; run it alone where you can.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

NEAREST = 10


def ten_nearest(points: np.ndarray, queries: np.ndarray, *, inner_product: bool) -> np.ndarray:
    """``[shape=(q, NEAREST)]`` rows of each query row's nearest other rows of ``points`` (faiss, exact)."""
    import faiss

    metric = faiss.METRIC_INNER_PRODUCT if inner_product else faiss.METRIC_L2
    _, rows = faiss.knn(np.ascontiguousarray(points[queries], np.float32), np.ascontiguousarray(points, np.float32),
                        NEAREST + 1, metric=metric)
    own = rows == queries[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), NEAREST)  # its own row, or the last if ties hid it
    keep = np.ones_like(own)
    keep[np.arange(len(queries)), drop] = False
    return rows[keep].reshape(len(queries), NEAREST)


def kept_share(vectors: np.ndarray, coords: np.ndarray, queries: np.ndarray) -> float:
    """Mean share of each query's 10 nearest in ``vectors`` among its 10 nearest in ``coords``."""
    near = ten_nearest(vectors, queries, inner_product=True)
    on_map = ten_nearest(coords, queries, inner_product=False)
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / NEAREST for a, b in zip(near, on_map)]))


def timed(call):
    """``(result, wall s, CPU s of this process)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run_method(method: str, vectors: np.ndarray, ids: np.ndarray, all_up_to: int, knn_cache: dict) -> dict | None:
    from core.neighbours import (UMAP_NEIGHBOURS, knn_graph, map_coordinates, place_by_nearest, sample_layout,
                                 smallest_by_rank, umap_coordinates)

    name, _, size = method.partition("-")
    if size == "all":
        if len(vectors) > all_up_to:
            return None
        if "knn" not in knn_cache:  # the job's stored neighbour table: not part of the map's time
            knn_cache["knn"], knn_cache["wall"], knn_cache["cpu"] = timed(lambda: knn_graph(vectors, UMAP_NEIGHBOURS))
        coords, wall, cpu = timed(lambda: umap_coordinates(vectors, knn=knn_cache["knn"]))
        return {"coords": coords, "wall_s": wall, "cpu_s": cpu, "knn_wall_s": knn_cache["wall"],
                "knn_cpu_s": knn_cache["cpu"]}
    if int(size) >= len(vectors):
        coords, wall, cpu = timed(lambda: map_coordinates(vectors, ids, sample=int(size), method=name))
        return {"coords": coords, "wall_s": wall, "cpu_s": cpu, "layout_cpu_s": cpu, "placement_cpu_s": 0.0}
    # map_coordinates' steps, timed apart: in the job the layout runs on one worker, the placement on all of them
    (sample_ids, sample_vectors), _, pick_cpu = timed(lambda: smallest_by_rank([(ids, vectors)], int(size)))
    sample_coords, layout_wall, layout_cpu = timed(lambda: sample_layout(sample_vectors, method=name))
    outside = ~np.isin(ids, sample_ids)
    placed, place_wall, place_cpu = timed(lambda: place_by_nearest(vectors[outside], sample_ids, sample_vectors,
                                                                   sample_coords))
    coords = np.zeros((len(vectors), 3), np.float32)
    coords[~outside] = sample_coords[np.searchsorted(sample_ids, ids[~outside])]
    coords[outside] = placed
    return {"coords": coords, "wall_s": layout_wall + place_wall, "cpu_s": pick_cpu + layout_cpu + place_cpu,
            "layout_cpu_s": layout_cpu, "placement_cpu_s": place_cpu}


def datasets(args):
    """``(label, vectors, ids)`` for each table folder, then each synthetic size."""
    import pyarrow.parquet as pq

    for folder in args.tables:
        table = pq.read_table(os.path.join(folder, "embeddings.parquet"))
        vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
        yield folder, vectors, table["track_id"].to_numpy().astype(np.int64)
    from playlists.synthetic import synthetic_vectors

    for n in args.sizes:
        vectors, _, _ = synthetic_vectors(n, n_styles=64, seed=0)
        yield f"synthetic {n:,}", vectors, np.arange(1000, 1000 + n, dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="synthetic catalogues")
    parser.add_argument("--tables", nargs="*", default=[], help="TABLES folders whose embeddings to map (read only)")
    parser.add_argument("--methods", nargs="+",
                        default=["tsne-20000", "tsne-5000", "umap-20000", "umap-50000", "umap-all"],
                        help="tsne-SAMPLE, umap-SAMPLE or umap-all; the first is the baseline")
    parser.add_argument("--all-up-to", type=int, default=100_000,
                        help="skip umap-all above this many tracks (its time grows with the catalogue)")
    parser.add_argument("--queries", type=int, default=2000, help="tracks the neighbourhood figure averages over")
    parser.add_argument("--save", default=None, help="folder to save each map's coordinates in (.npy)")
    args = parser.parse_args()
    for method in args.methods:
        name, _, size = method.partition("-")
        if name not in ("tsne", "umap") or not (size.isdigit() and int(size) > 0 or method == "umap-all"):
            parser.error(f"--methods: {method!r} is not tsne-SAMPLE, umap-SAMPLE or umap-all")
    from core.neighbours import umap_module, umap_coordinates

    _, wall, cpu = timed(umap_module)
    warm = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    _, warm_wall, warm_cpu = timed(lambda: umap_coordinates(warm / np.linalg.norm(warm, axis=1, keepdims=True)))
    # once per process (a worker's first map pays it): numba compiles UMAP's functions
    print(json.dumps({"import_umap_wall_s": round(wall, 2), "import_umap_cpu_s": round(cpu, 2),
                      "first_umap_wall_s": round(warm_wall, 2), "first_umap_cpu_s": round(warm_cpu, 2),
                      "load": os.getloadavg()}), flush=True)
    rows = []
    for label, vectors, ids in datasets(args):
        queries = np.sort(np.random.default_rng(0).choice(len(vectors), min(args.queries, len(vectors)), replace=False))
        knn_cache: dict = {}
        for method in args.methods:
            result = run_method(method, vectors, ids, args.all_up_to, knn_cache)
            if result is None:
                continue
            coords = result.pop("coords")
            if args.save:
                os.makedirs(args.save, exist_ok=True)
                np.save(os.path.join(args.save, f"{label.replace('/', '_').replace(' ', '_')}-{method}.npy"), coords)
            row = {"data": label, "n": len(vectors), "method": method, **{k: round(v, 1) for k, v in result.items()},
                   "kept_of_10": round(kept_share(vectors, coords, queries), 3), "load": os.getloadavg()[0]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\n| data | tracks | method | wall (s) | CPU (s) | of which layout, one worker | placement | "
          "10 nearest kept on the map | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['n']:,} | {r['method']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
              f"{r.get('layout_cpu_s', r['cpu_s']):.1f} | {r.get('placement_cpu_s', 0.0):.1f} | "
              f"{r['kept_of_10']:.3f} | {r['load']:.1f} |")


if __name__ == "__main__":
    main()
