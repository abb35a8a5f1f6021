"""Playlist query latency: radio and a 20-track journey, at catalogue sizes up to 1,000,000 tracks.

    python -m benchmarks.queries [--sizes 8000 1000000] [--radios 2000] [--journeys 100] [--baseline-journeys 10]
    python -m benchmarks.queries --quality TABLES      # style figures of the playlist kinds on real tables
    python -m benchmarks.queries --smoothness TABLES... [--journeys 100]   # journeys: full scan vs index

For each size, synthetic tables (``playlists.synthetic``: 64-d clustered unit vectors, 50 neighbours per track
by faiss, exact up to 50,000 tracks, IVF above) are written once under ``--cache``, loaded with
``load_tables`` and queried from random seeds. Reported: p50 and p99 latency of
- radio (20 tracks) from the neighbour arrays loaded once, against the two ways it was done before: reading the
  seed's rows of neighbours.parquet with a filter per call, and ranking the whole catalogue (brute force);
- journey (20 tracks; a least-energy path over 400 candidates) with its candidates from a full scan of the
  catalogue (one matrix product; wavelist's way up to ``playlists.vector_index.INDEX_ABOVE`` tracks) and from
  the approximate index plus the stored neighbours (wavelist's way above; issue 34): wall and CPU time per journey,
  the index's build time and size, and the smoothness of both on the same pairs; against the original study's
  method: for each of 18 evenly spaced points on the line A -> B, one scan of the catalogue for the nearest
  unused track (one Python loop iteration per step).
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


def timed(query: Callable[[int], object], count: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU seconds (this process's) per call of ``query(i)``, after one warm-up call."""
    query(-1)
    wall, cpu = [], []
    for i in range(count):
        started, cpu_started = time.perf_counter(), time.process_time()
        query(i)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return np.array(wall), np.array(cpu)


def compare_journeys(tables, pairs: np.ndarray, n: int = 20) -> dict[str, list]:
    """Journeys between ``pairs`` (rows of two ids; the first is a warm-up) with the candidates of a full scan and
    of the index (``playlists.vector_index.INDEX_ABOVE`` set for each); prints the time and smoothness of both
    and returns the entries."""
    import psutil

    from playlists import journey, smoothness, vector_index

    default = vector_index.INDEX_ABOVE
    process = psutil.Process()
    rss, started, cpu_started = process.memory_info().rss, time.perf_counter(), time.process_time()
    index = tables.vector_index
    print(f"  vector index: {index.lists} lists, built in {time.perf_counter() - started:.1f} s "
          f"({time.process_time() - cpu_started:.1f} s CPU), {index.nbytes / 1e6:.0f} MB held, resident memory "
          f"{(process.memory_info().rss - rss) / 1e6:+.0f} MB (default: index above {default:,} tracks)")
    found: dict[str, list] = {"scan": [None] * len(pairs), "index": [None] * len(pairs)}
    figures = {}
    try:
        for way, above in (("scan", len(tables)), ("index", 0)):
            vector_index.INDEX_ABOVE = above

            def run(i: int) -> None:
                found[way][i] = journey(tables, int(pairs[i, 0]), int(pairs[i, 1]), n)

            wall, cpu = timed(run, len(pairs) - 1)
            figures[way] = [smoothness(tables, e) for e in found[way][:-1]]
            mark = " (default)" if (way == "index") == (len(tables) > default) else ""
            print(row(f"journey, {n} tracks, candidates by {way}{mark}", wall) +
                  f"  CPU p50 {np.percentile(cpu, 50) * 1e3:.2f} ms, mean {np.mean(cpu) * 1e3:.2f} ms")
    finally:
        vector_index.INDEX_ABOVE = default
    for way in ("scan", "index"):
        weakest = [x["min_step_similarity"] for x in figures[way]]
        print(f"  {way:<5} smoothness over {len(weakest)} journeys: weakest step mean {np.mean(weakest):.4f} "
              f"(worst {np.min(weakest):.4f}), mean step {np.mean([x['mean_step_similarity'] for x in figures[way]]):.4f}, "
              f"steps forward {np.mean([x['monotonic_fraction'] for x in figures[way]]):.3f}, "
              f"lengths {sorted({len(e) for e in found[way][:-1]})}")
    pairs_of_figures = list(zip(figures["scan"], figures["index"]))
    weaker = sum(i["min_step_similarity"] < s["min_step_similarity"] - 1e-6 for s, i in pairs_of_figures)
    stronger = sum(i["min_step_similarity"] > s["min_step_similarity"] + 1e-6 for s, i in pairs_of_figures)
    same = sum([e.track_id for e in a] == [e.track_id for e in b]
               for a, b in zip(found["scan"][:-1], found["index"][:-1]))
    print(f"  index vs scan, journey by journey: weakest step lower in {weaker}, higher in {stronger}, "
          f"the same tracks in {same} of {len(pairs) - 1}")
    return found


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
    from playlists import load_tables, radio, smoothness, vector_index
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

    found = compare_journeys(tables, pairs)
    ours = found["index" if len(tables) > vector_index.INDEX_ABOVE else "scan"]
    count = min(args.baseline_journeys, len(pairs) - 1)
    line_found = [None] * count

    def run_line(i: int) -> None:
        line_found[i] = line_journey(tables, int(pairs[i, 0]), int(pairs[i, 1]), 20)

    line = latencies(run_line, count)
    print(row("journey, 20 tracks: line + loop (original study)", line))
    figures = [(smoothness(tables, ours[i]), smoothness(tables, line_found[i])) for i in range(count)]
    for key in ("min_step_similarity", "monotonic_fraction"):
        print(f"  {key} (mean of {count} journeys): wavelist {np.mean([f[0][key] for f in figures]):.3f}, "
              f"original {np.mean([f[1][key] for f in figures]):.3f}")


def smoothness_on(folder: Path, count: int) -> None:
    """Journeys between ``count`` random pairs of a TABLES folder: candidates by full scan and by the index."""
    from playlists import load_tables

    tables = load_tables(folder)
    tables.neighbour_rows  # noqa: B018 (read now, not in the first journey's time)
    print(f"\n{folder}: {len(tables):,} tracks")
    rng = np.random.default_rng(len(tables))
    pairs = np.array([rng.choice(tables.ids, 2, replace=False) for _ in range(count + 1)])
    compare_journeys(tables, pairs)


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
    parser.add_argument("--smoothness", type=Path, nargs="+", metavar="TABLES",
                        help="instead: --journeys journeys between random pairs of each TABLES folder, candidates "
                             "by full scan and by the index: time and smoothness")
    args = parser.parse_args()
    if args.quality:
        quality(args.quality)
        return
    if args.smoothness:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            for folder in args.smoothness:
                smoothness_on(folder, args.journeys)
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # the baselines too, as wavelist's queries do (one_blas_thread)
        for size in args.sizes:
            bench(size, args.cache, args)


if __name__ == "__main__":
    main()
