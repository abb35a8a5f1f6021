"""Playlist query latency: radio and a 20-track journey, at catalogue sizes up to 1,000,000 tracks.

    python -m benchmarks.queries [--sizes 8000 1000000] [--radios 2000] [--journeys 100] [--baseline-journeys 10]
    python -m benchmarks.queries --quality TABLES      # style figures of the playlist kinds on real tables

For each size, synthetic tables (``playlists.synthetic``: 64-d clustered unit vectors, 50 neighbours per track
by faiss, exact up to 50,000 tracks, IVF above) are written once under ``--cache``, loaded with
``load_tables`` and queried from random seeds. Reported: p50 and p99 latency of
- radio (20 tracks) from the neighbour arrays loaded once, against the two ways it was done before: reading the
  seed's rows of neighbours.parquet with a filter per call, and ranking the whole catalogue (brute force);
- journey (20 tracks; one matrix product over the catalogue, then a least-energy path over 400 candidates),
  against the original study's method: for each of 18 evenly spaced points on the line A -> B, one scan of
  the catalogue for the nearest unused track (one Python loop iteration per step).
Every query runs with one BLAS thread (as ``playlists`` does: a second thread slows small and memory-bound
products on a busy machine). All figures of a size come from the same run; the first query of each kind is a warm-up and is not counted.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import numpy as np



def latencies(query: Callable[[int], object], count: int) -> np.ndarray:
    """Seconds per call of ``query(i)`` for ``i`` in ``0..count-1``, after one warm-up call."""
    query(-1)
    times = []
    for i in range(count):
        started = time.perf_counter()
        query(i)
        times.append(time.perf_counter() - started)
    return np.array(times)


def row(name: str, seconds: np.ndarray, baseline: np.ndarray | None = None) -> str:
    p50, p99 = np.percentile(seconds, 50) * 1e3, np.percentile(seconds, 99) * 1e3
    ratio = f"{np.percentile(baseline, 50) / np.percentile(seconds, 50):10.1f}x" if baseline is not None else ""
    return f"  {name:<48} {p50:10.3f} {p99:10.3f} {len(seconds):6d} {ratio}"


def brute_force_radio(tables, seed: int, n: int = 20) -> list[int]:
    scores = tables.vectors @ tables.vector(seed)
    scores[tables.row(seed)] = -np.inf
    return tables.ids[np.argsort(-scores)[:n]].tolist()


def parquet_filter_radio(tables, seed: int, n: int = 20) -> list[int]:
    """How radio read its neighbours before: the seed's rows of neighbours.parquet, one filtered read a call."""
    import pyarrow.parquet as pq

    table = pq.read_table(tables.folder / "neighbours.parquet", filters=[("track_id", "=", seed)])
    order = np.argsort(table["rank"].to_numpy())
    return table["neighbour_id"].to_numpy()[order][:n].tolist()


def bench(size: int, cache: Path, args: argparse.Namespace) -> None:
    from playlists import journey, load_tables, radio, smoothness
    from playlists.baselines import line_journey
    from playlists.synthetic import write_synthetic_tables

    folder = cache / f"tables-{size}"
    if not (folder / "map3d.parquet").exists():
        started = time.perf_counter()
        write_synthetic_tables(folder, size, k=50)
        print(f"{size:,} tracks: tables written in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    tables = load_tables(folder)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    tables.neighbour_rows  # noqa: B018 (the lazy load, timed)
    arrays = time.perf_counter() - started
    print(f"\n{size:,} tracks: load_tables {loaded:.2f} s, neighbour arrays {arrays:.2f} s (once per process)")
    rng = np.random.default_rng(size)
    seeds = rng.choice(tables.ids, args.radios + 1)
    pairs = rng.choice(tables.ids, (args.journeys + 1, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]

    print(f"  {'query':<48} {'p50 ms':>10} {'p99 ms':>10} {'calls':>6} {'p50 speed-up':>11}")
    fast = latencies(lambda i: radio(tables, int(seeds[i])), args.radios)
    filtered = latencies(lambda i: parquet_filter_radio(tables, int(seeds[i])), min(args.radios, 200))
    brute = latencies(lambda i: brute_force_radio(tables, int(seeds[i])), min(args.radios, 200))
    print(row("radio: neighbour arrays (wavelist)", fast))
    print(row("radio: neighbours.parquet filter per call (before)", filtered))
    print(row("radio: brute force over all tracks", brute))
    print(f"  radio speed-up at p50: {np.median(filtered) / np.median(fast):.0f}x vs the Parquet filter, "
          f"{np.median(brute) / np.median(fast):.0f}x vs brute force")

    found: dict[tuple[str, int], list] = {}

    def run(method: Callable, name: str, i: int) -> None:
        found[name, i] = method(tables, int(pairs[i, 0]), int(pairs[i, 1]), 20)

    ours = latencies(lambda i: run(journey, "ours", i), len(pairs) - 1)
    count = min(args.baseline_journeys, len(pairs) - 1)
    line = latencies(lambda i: run(line_journey, "line", i), count)
    print(row("journey, 20 tracks (wavelist)", ours))
    print(row("journey, 20 tracks: line + loop (original study)", line))
    print(f"  journey speed-up at p50: {np.median(line) / np.median(ours):.1f}x")
    figures = [(smoothness(tables, found["ours", i]), smoothness(tables, found["line", i])) for i in range(count)]
    for key in ("min_step_similarity", "monotonic_fraction"):
        print(f"  {key} (mean of {count} journeys): wavelist {np.mean([f[0][key] for f in figures]):.3f}, "
              f"original {np.mean([f[1][key] for f in figures]):.3f}")


def quality(folder: Path) -> None:
    """Style figures of alchemy, like, profile, clusters and journeys on a real TABLES folder (e.g. the demo's)."""
    from collections import Counter

    from playlists import journey, like, load_tables, smoothness
    from playlists.baselines import line_journey
    from playlists.alchemy import alchemy
    from playlists.discover import clusters
    from playlists.profile import profile

    tables = load_tables(folder)
    genre = tables.column("genre")
    styles = sorted({g for g in genre if g})
    ids = {s: [int(i) for i in tables.ids[genre == s]] for s in styles}

    def share(entries, style):
        return Counter(genre[tables.row(e.track_id)] for e in entries)[style] / len(entries)

    pairs = [(a, b) for a in styles for b in styles if a != b]
    kept, removed = [], []
    for a, b in pairs:
        entries = alchemy(tables, [ids[a][0], ids[b][0]], ids[b][1:2], 20)
        kept.append(share(entries, a))
        removed.append(share(entries, b))
    print(f"\n{folder}: {len(tables)} tracks, {len(styles)} styles")
    print(f"  alchemy (+1 of A, +1 of B, -1 other of B; 20 tracks), {len(pairs)} style pairs: share of A "
          f"{np.mean(kept):.3f} (min {np.min(kept):.3f}), share of B {np.mean(removed):.3f} (max {np.max(removed):.3f})")
    blend = [min(share(like(tables, [ids[a][0], ids[b][0]], 20), a), share(like(tables, [ids[a][0], ids[b][0]], 20), b))
             for a, b in pairs]
    print(f"  like (one seed of A, one of B; 20 tracks): the smaller style's share {np.mean(blend):.3f} (min {np.min(blend):.3f})")
    own = [share(profile(tables, ids[s][:5], 10), s) for s in styles]
    print(f"  profile (history of 5 tracks of one style; 10 tracks): share of that style {np.mean(own):.3f} (min {np.min(own):.3f})")
    found, silhouette = clusters(tables, len(styles))
    print(f"  clusters (k = {len(styles)}): silhouette {silhouette:.3f}, coherence mean "
          f"{np.mean([c.coherence for c in found]):.3f} (min {np.min([c.coherence for c in found]):.3f}), "
          f"genre share mean {np.mean([c.genre_share for c in found]):.3f}, distinct genres {len({c.genre for c in found})}")
    ours = [smoothness(tables, journey(tables, ids[a][0], ids[b][0], 10)) for a, b in pairs]
    line = [smoothness(tables, line_journey(tables, ids[a][0], ids[b][0], 10)) for a, b in pairs]
    for key in ("min_step_similarity", "monotonic_fraction"):
        print(f"  journey (10 tracks, {len(pairs)} style pairs) {key}: wavelist {np.mean([o[key] for o in ours]):.3f}, "
              f"original line method {np.mean([x[key] for x in line]):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[8000, 1_000_000])
    parser.add_argument("--radios", type=int, default=2000)
    parser.add_argument("--journeys", type=int, default=100)
    parser.add_argument("--baseline-journeys", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/wavelist-query-bench"))
    parser.add_argument("--quality", type=Path, metavar="TABLES",
                        help="instead: style figures of alchemy, like, profile, clusters, journeys on TABLES")
    args = parser.parse_args()
    if args.quality:
        quality(args.quality)
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # the baselines too, as wavelist's queries do (one_blas_thread)
        for size in args.sizes:
            bench(size, args.cache, args)


if __name__ == "__main__":
    main()
