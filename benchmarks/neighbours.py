"""Neighbour search at scale: faiss exact (one process) vs wavelist's exact and approximate Beam transforms.

    python -m benchmarks.neighbours [--sizes 10000 100000] [--approximate-only 1000000] [--k 10]

Two kinds of 64-d unit vectors: clustered (a mixture of 1,000 Gaussians, as real embeddings are) and uniform
(the hardest case for an index). For each size: wall time and recall@10 against exact of (a) faiss
IndexFlatIP, all against all, in this process; (b) wavelist's exact block-against-block Beam transform;
(c) its approximate IVF transform; both Beam runs on the FnApiRunner with 2 worker processes.
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


CHUNK = 10_000


def make_vectors(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        x = rng.standard_normal((n, 64)).astype(np.float32)
    else:
        centres = rng.standard_normal((1000, 64)).astype(np.float32)
        x = centres[rng.integers(0, 1000, n)] + 0.35 * rng.standard_normal((n, 64)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def faiss_exact(vectors: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    import faiss

    faiss.omp_set_num_threads(2)
    started = time.perf_counter()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    _, rows = index.search(vectors, k + 1)
    elapsed = time.perf_counter() - started
    ids = np.arange(len(vectors))
    found = np.array([[r for r in row if r != i][:k] for i, row in zip(ids, rows)])
    return found, elapsed


def beam_run(path: Path, n: int, k: int, approximate: bool, nprobe: int | None, out: Path) -> tuple[dict, float]:
    """Run one transform over the vectors saved at ``path``; returns the neighbour ids and the wall time."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_jobs import common
    from beam_jobs.embed.testing import ApproximateNeighbours, NearestNeighbours

    def load(chunk: int):
        vectors = np.load(path, mmap_mode="r")
        for i in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            yield i, np.array(vectors[i])

    def save(blocks):
        found = np.full((n, k), -1, np.int64)
        for track_ids, ids, _ in blocks:
            found[track_ids, : ids.shape[1]] = ids
        np.save(out, found)

    argv = ["--direct_num_workers=2"]
    pipeline = common.make_pipeline(PipelineOptions(argv), argv)
    vectors = (pipeline | beam.Create(list(range(-(-n // CHUNK)))) | beam.Reshuffle() | beam.FlatMap(load))
    search = ApproximateNeighbours(k, nprobe, index_dir=str(out.parent)) if approximate else NearestNeighbours(k)
    _ = vectors | search | beam.combiners.ToList() | beam.Map(save)
    report = {}
    if approximate:
        _ = search.report | beam.Map(lambda r: out.with_suffix(".json").write_text(json.dumps(r)))
    started = time.perf_counter()
    pipeline.run().wait_until_finish()
    elapsed = time.perf_counter() - started
    if approximate:
        report = json.loads(out.with_suffix(".json").read_text())
    return {"found": np.load(out), **report}, elapsed


def recall(found: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(a[:k]) & set(e[:k])) / k for a, e in zip(found, exact)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--approximate-only", type=int, nargs="*", default=[])
    parser.add_argument("--kinds", nargs="+", default=["clustered", "uniform"])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, default=None, help="default: the job's automatic choice (recall 0.95)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp())
    rows = []
    for kind in args.kinds:
        for n in args.sizes + args.approximate_only:
            vectors = make_vectors(kind, n)
            path = scratch / f"{kind}-{n}.npy"
            np.save(path, vectors)
            row = {"kind": kind, "n": n}
            exact = None
            if n in args.sizes:
                exact, row["faiss_flat_s"] = faiss_exact(vectors, args.k)
                beam_exact, row["beam_exact_s"] = beam_run(path, n, args.k, False, args.nprobe, scratch / "e.npy")
                row["beam_exact_recall"] = recall(beam_exact["found"], exact)
            approx, row["beam_approx_s"] = beam_run(path, n, args.k, True, args.nprobe, scratch / "a.npy")
            row["approx_recall_in_job"] = approx["recall@10"]
            row["lists"], row["nprobe"] = approx["lists"], approx["nprobe"]
            if exact is not None:
                row["beam_approx_recall"] = recall(approx["found"], exact)
            row["peak_mb_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            row["peak_mb_workers"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("| data | n | faiss flat (s) | wavelist exact (s) | exact / faiss | wavelist approximate (s) | recall@10 | lists / nprobe |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        flat, ex = r.get("faiss_flat_s"), r.get("beam_exact_s")
        recall_value = r.get("beam_approx_recall", r["approx_recall_in_job"])
        print(f"| {r['kind']} | {r['n']:,} | {flat or float('nan'):.1f} | {ex or float('nan'):.1f} | "
              f"{(ex / flat) if flat else float('nan'):.1f} | {r['beam_approx_s']:.1f} | {recall_value:.3f} | "
              f"{r['lists']} / {r['nprobe']} |")


if __name__ == "__main__":
    main()
