"""Pure nearest-neighbour and map code on unit vectors (numpy, scikit-learn). No Beam here."""
from __future__ import annotations

import numpy as np

from core.vectors import unit as l2_normalise  # the one unit-normalise (a zero row raises)


def top_k_cosine(
    queries: np.ndarray, query_ids: np.ndarray, catalogue: np.ndarray, catalogue_ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` cosine neighbours of each query among ``catalogue``, the query's own id excluded.

    Vectors must be unit length. Returns ``(neighbour_ids [m, k'], similarities [m, k'])`` with
    ``k' = min(k, n - 1)``, best first; ties are broken by the smaller id, so results are deterministic.
    """
    k = min(k, len(catalogue_ids) - 1)
    if k <= 0:
        return np.zeros((len(query_ids), 0), np.int64), np.zeros((len(query_ids), 0), np.float32)
    similarities = queries @ catalogue.T
    similarities[query_ids[:, None] == catalogue_ids[None, :]] = -np.inf
    candidates = np.argpartition(-similarities, k - 1, axis=1)[:, :k] if k < similarities.shape[1] else (
        np.tile(np.arange(similarities.shape[1]), (len(query_ids), 1))
    )
    candidate_sims = np.take_along_axis(similarities, candidates, axis=1)
    candidate_ids = catalogue_ids[candidates]
    order = np.lexsort((candidate_ids, -candidate_sims), axis=1)[:, :k] if candidates.size else candidates
    return (
        np.take_along_axis(candidate_ids, order, axis=1).astype(np.int64),
        np.take_along_axis(candidate_sims, order, axis=1).astype(np.float32),
    )


MAP_SAMPLE = 50_000  # tracks laid out; the rest placed beside them (benchmarks/RESULTS.md, issue 34)


def top_k_faiss(
    queries: np.ndarray, query_ids: np.ndarray, catalogue: np.ndarray, catalogue_ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k_cosine` computed by ``faiss.knn`` (a matrix product and a heap in C++; ten times faster
    on 4,096 x 4,096 blocks). Same contract: own id excluded, best first, ties by the smaller id, ``k'``
    columns."""
    import faiss

    k_out = min(k, len(catalogue_ids) - 1)
    if k_out <= 0:
        return np.zeros((len(query_ids), 0), np.int64), np.zeros((len(query_ids), 0), np.float32)
    found = min(k + 1, len(catalogue_ids))
    sims, rows = faiss.knn(np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(catalogue, np.float32),
                           found, metric=faiss.METRIC_INNER_PRODUCT)
    ids = np.where(rows >= 0, catalogue_ids[np.maximum(rows, 0)], -1)
    dropped = (ids == query_ids[:, None]) | (rows < 0)
    sims = np.where(dropped, -np.inf, sims)
    order = np.lexsort((np.where(dropped, np.iinfo(np.int64).max, ids), -sims), axis=-1)[:, :k_out]
    return np.take_along_axis(ids, order, axis=1).astype(np.int64), np.take_along_axis(sims, order, axis=1).astype(np.float32)


def sample_rank(track_ids) -> np.ndarray:
    """A pseudo-random rank of each id (uint64, a bijection of the id, so no two tracks tie): the map's
    t-SNE sample is the ``MAP_SAMPLE`` tracks of smallest rank, which any worker can test on its own."""
    ids = np.asarray(track_ids, np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        return ids * np.uint64(0x9E3779B97F4A7C15)  # odd multiplier: wraps modulo 2**64, one-to-one


def smallest_by_rank(parts: list[tuple[np.ndarray, np.ndarray]], sample: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)`` parts -> the ``sample`` tracks of smallest :func:`sample_rank`, sorted by id; the
    same result however the tracks are split into parts."""
    parts = [(np.asarray(i, np.int64), np.asarray(v, np.float32)) for i, v in parts if len(i)]
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    ids = np.concatenate([i for i, _ in parts])
    vectors = np.concatenate([v for _, v in parts])
    keep = np.argsort(sample_rank(ids), kind="stable")[:sample]
    keep = keep[np.argsort(ids[keep], kind="stable")]
    return ids[keep], vectors[keep]


def tsne_coordinates(vectors: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """3-D t-SNE (cosine) of all ``vectors``; below 8 tracks, where t-SNE is meaningless, the first three
    principal components. Returns ``[shape=(n, 3)]`` float32."""
    n = len(vectors)
    coords = np.zeros((n, 3), np.float32)
    if n < 8:
        from sklearn.decomposition import PCA

        if n > 1:
            components = min(3, n - 1, vectors.shape[1])
            coords[:, :components] = PCA(n_components=components, random_state=seed).fit_transform(vectors)
        return coords
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=3, perplexity=min(30.0, (n - 1) / 3), metric="cosine", init="pca", random_state=seed)
    coords[:] = tsne.fit_transform(vectors)
    return coords


UMAP_NEIGHBOURS = 15  # UMAP's default local neighbourhood
# 0.5, not UMAP's 0.1: each cluster a cloud with room inside it rather than a dot (benchmarks/RESULTS.md, issue 34)
UMAP_MIN_DIST = 0.5


def umap_module():
    """``umap.umap_`` without its package's optional ``ParametricUMAP``, whose import loads TensorFlow (seconds
    and log lines in a worker that needs none of it)."""
    import sys
    import warnings

    if "umap.umap_" not in sys.modules and "umap.parametric_umap" not in sys.modules:
        sys.modules["umap.parametric_umap"] = None  # type: ignore[assignment]  # umap's __init__ then skips it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import umap.umap_  # noqa: F401
        finally:
            if sys.modules.get("umap.parametric_umap", 0) is None:
                del sys.modules["umap.parametric_umap"]  # a later explicit import may still load it
    return sys.modules["umap.umap_"]


def knn_graph(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each unit row's ``k`` nearest other rows by cosine (``faiss.knn``, exact): ``(rows [n, k], similarities
    [n, k])``, best first."""
    rows = np.arange(len(vectors), dtype=np.int64)
    return top_k_faiss(vectors, rows, vectors, rows, k)


def umap_coordinates(vectors: np.ndarray, *, seed: int = 0, neighbours: int = UMAP_NEIGHBOURS,
                     knn: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """3-D UMAP (cosine) of all unit ``vectors`` on their ``neighbours``-nearest graph: ``knn`` = ``(rows [n, k],
    similarities [n, k])`` of each track's nearest other tracks, best first, ``k >= neighbours`` (row -1 =
    none; default: :func:`knn_graph`). Deterministic for a ``seed`` (one thread). Below 8 tracks the first three
    principal components, as :func:`tsne_coordinates`. Returns ``[shape=(n, 3)]`` float32."""
    import warnings

    vectors = np.asarray(vectors, np.float32)
    n = len(vectors)
    if n < 8:
        return tsne_coordinates(vectors, seed=seed)
    neighbours = min(neighbours, n - 1)
    rows, sims = knn_graph(vectors, neighbours) if knn is None else knn
    rows, sims = np.asarray(rows, np.int64)[:, : neighbours], np.asarray(sims, np.float32)[:, : neighbours]
    # UMAP's graph lists each point first, at distance 0; a missing neighbour (-1) stays -1, as UMAP's own
    own = np.arange(n, dtype=np.int64)[:, None]
    knn_rows = np.concatenate([own, rows], axis=1)
    knn_dists = np.concatenate([np.zeros((n, 1), np.float32),
                                np.where(rows >= 0, np.clip(1.0 - sims, 0.0, 2.0), np.inf)], axis=1).astype(np.float32)
    umap_ = umap_module()
    layout = umap_.UMAP(n_components=3, n_neighbors=neighbours + 1, min_dist=UMAP_MIN_DIST, metric="cosine",
                        random_state=seed, n_jobs=1,
                        init="spectral" if n > 64 else "pca", precomputed_knn=(knn_rows, knn_dists, None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no search index (we never transform) and the seed's single thread
        coords = layout.fit_transform(vectors)
    return np.asarray(coords, np.float32)


MAP_NEIGHBOURS = 5


# Above this many sampled tracks, the placement searches an IVF index of the sample (PLACEMENT_NPROBE lists a
# track) instead of every sampled track: at 1,000,000 tracks and a 50,000-track sample the exact search cost
# 222 s of CPU, most of the map (benchmarks/RESULTS.md, issue 34)
PLACEMENT_INDEX_ABOVE = 20_000
PLACEMENT_NPROBE = 16


def placement_index(sample_vectors: np.ndarray):
    """The index :func:`nearest_rows` searches for the map's sample (:func:`build_ivf_index`, seeded, so every
    process builds the same), or None where the sample is small enough to search whole."""
    return build_ivf_index(sample_vectors) if len(sample_vectors) > PLACEMENT_INDEX_ABOVE else None


def nearest_rows(vectors: np.ndarray, sample_vectors: np.ndarray, k: int = MAP_NEIGHBOURS, index=None) -> np.ndarray:
    """``[shape=(m, k)]`` rows of the ``k`` sampled vectors nearest to each of ``vectors``: all of them searched
    (``faiss.knn``; ties by the smaller row), or with ``index`` (:func:`placement_index`) the ones in its
    ``PLACEMENT_NPROBE`` nearest lists (a track whose lists hold fewer than ``k`` is searched whole)."""
    rows = np.arange(len(sample_vectors), dtype=np.int64)
    queries, no_ids = np.asarray(vectors, np.float32), np.full(len(vectors), -1, np.int64)
    if index is None:
        return top_k_faiss(queries, no_ids, np.asarray(sample_vectors, np.float32), rows, k)[0]
    nearest, _ = search_ivf(index, rows, queries, no_ids, k, PLACEMENT_NPROBE)
    short = (nearest < 0).any(axis=1)
    if short.any():
        nearest[short] = top_k_faiss(queries[short], no_ids[short], np.asarray(sample_vectors, np.float32), rows, k)[0]
    return nearest


def place_by_nearest(vectors: np.ndarray, sample_ids: np.ndarray, sample_vectors: np.ndarray,
                     sample_coords: np.ndarray, k: int = MAP_NEIGHBOURS, index=None) -> np.ndarray:
    """Map coordinates of tracks outside the map's sample: the mean position of their ``k`` nearest sampled
    tracks (:func:`nearest_rows`). Returns ``[shape=(m, 3)]`` float32."""
    if len(vectors) == 0 or len(sample_ids) == 0:
        return np.zeros((len(vectors), 3), np.float32)
    return sample_coords[nearest_rows(vectors, sample_vectors, k, index)].mean(axis=1).astype(np.float32)


MAP_METHODS = ("auto", "tsne", "umap")
MAP_METHOD = "auto"
# "auto": t-SNE up to this many tracks (at most about a minute on one core; on real songs its map keeps more
# neighbours and spreads them more evenly than UMAP's), UMAP above (benchmarks/RESULTS.md, issue 34)
TSNE_UP_TO = 5_000


def sample_layout(vectors: np.ndarray, *, seed: int = 0, method: str = MAP_METHOD) -> np.ndarray:
    """The map's layout of its sample: :func:`tsne_coordinates` or :func:`umap_coordinates`; ``"auto"``, t-SNE
    up to :data:`TSNE_UP_TO` tracks and UMAP above."""
    if method not in MAP_METHODS:
        raise ValueError(f"map method {method!r}: one of {', '.join(MAP_METHODS)}")
    if method == "auto":
        method = "tsne" if len(vectors) <= TSNE_UP_TO else "umap"
    return (tsne_coordinates if method == "tsne" else umap_coordinates)(vectors, seed=seed)


def map_coordinates(vectors: np.ndarray, ids: np.ndarray | None = None, *, seed: int = 0,
                    sample: int = MAP_SAMPLE, method: str = MAP_METHOD) -> np.ndarray:
    """3-D coordinates of unit ``vectors`` for the catalogue map, as the embed job computes them.

    Up to ``sample`` tracks, a layout (:func:`sample_layout` by ``method``) of them all. Above, the layout of
    the ``sample`` tracks of smallest :func:`sample_rank` of their ``ids`` (default: the row numbers), and
    every other track placed at the mean position of its 5 nearest sampled tracks (a layout's time and memory
    at millions of points are out of reach of one worker). Returns ``[shape=(n, 3)]`` float32, rows as
    ``vectors``.
    """
    vectors = np.asarray(vectors, np.float32)
    ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    chosen_ids, chosen_vectors = smallest_by_rank([(ids, vectors)], sample)
    chosen_coords = sample_layout(chosen_vectors, seed=seed, method=method)
    coords = np.zeros((len(vectors), 3), np.float32)
    at = np.searchsorted(chosen_ids, ids)
    inside = (at < len(chosen_ids)) & (chosen_ids[np.minimum(at, max(len(chosen_ids) - 1, 0))] == ids) \
        if len(chosen_ids) else np.zeros(len(ids), bool)
    coords[inside] = chosen_coords[at[inside]]
    if (~inside).any():
        coords[~inside] = place_by_nearest(vectors[~inside], chosen_ids, chosen_vectors, chosen_coords,
                                           index=placement_index(chosen_vectors))
    return coords


def merge_top_k(lists: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge partial neighbour lists ``(ids, similarities)`` of one track into its top ``k``.

    Best first; ties by the smaller id (as :func:`top_k_cosine`), so the result does not depend on the
    order in which partial lists arrive.
    """
    ids = np.concatenate([np.asarray(i, np.int64) for i, _ in lists]) if lists else np.zeros(0, np.int64)
    sims = np.concatenate([np.asarray(s, np.float32) for _, s in lists]) if lists else np.zeros(0, np.float32)
    order = np.lexsort((ids, -sims))[:k]
    return ids[order], sims[order]


def merge_block_top_k(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`merge_top_k` for a whole block at once: each part is ``(ids [m, j], similarities [m, j])`` for
    the same m queries in the same order; returns their merged top ``k`` per row, vectorised."""
    ids = np.concatenate([np.asarray(i, np.int64) for i, _ in parts], axis=1)
    sims = np.concatenate([np.asarray(s, np.float32) for _, s in parts], axis=1)
    order = np.lexsort((ids, -sims), axis=-1)[:, :k]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(sims, order, axis=1)


def block_of(track_ids, n_blocks: int):
    """The block of each track: a stable hash of its id, so blocks are balanced whatever the ids look like.
    Takes one id (returns an int) or an array of ids (returns an int64 array)."""
    ids = np.asarray(track_ids, np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = ids * np.uint64(0x9E3779B97F4A7C15)  # wraps modulo 2**64, as intended
    blocks = ((mixed >> np.uint64(32)) % np.uint64(n_blocks)).astype(np.int64)
    return int(blocks) if blocks.ndim == 0 else blocks


def stack_lists(lists: list[tuple[int, tuple[np.ndarray, np.ndarray]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-track neighbour lists ``(track_id, (ids, similarities))`` -> one block ``(track ids [m],
    neighbour ids [m, k], similarities [m, k])``; shorter lists are padded with id -1, similarity -inf."""
    width = max((len(ids) for _, (ids, _) in lists), default=0)
    track_ids = np.array([t for t, _ in lists], np.int64)
    ids = np.full((len(lists), width), -1, np.int64)
    sims = np.full((len(lists), width), -np.inf, np.float32)
    for row, (_, (row_ids, row_sims)) in enumerate(lists):
        ids[row, : len(row_ids)], sims[row, : len(row_sims)] = row_ids, row_sims
    return track_ids, ids, sims


def unstack_lists(block: tuple[np.ndarray, np.ndarray, np.ndarray]):
    """The inverse of :func:`stack_lists`: ``(track_id, (ids, similarities))`` per row, padding dropped."""
    track_ids, ids, sims = block
    for track_id, row_ids, row_sims in zip(track_ids.tolist(), ids, sims):
        keep = row_ids >= 0
        yield track_id, (row_ids[keep], row_sims[keep])


def ivf_lists(n: int) -> int:
    """Inverted lists of the approximate index: about 4 sqrt(n), faiss's usual choice."""
    return max(1, min(n // 39, int(4 * np.sqrt(n)))) if n >= 39 else 1


IVF_TRAINING_PER_LIST = 64  # within faiss's advised 39-256; k-means time stays a fraction of the search


def ivf_training_rows(ids: np.ndarray, n_total: int) -> np.ndarray:
    """Which of ``ids`` (part of a catalogue of ``n_total`` tracks) train the index's quantiser: those whose
    :func:`sample_rank` lies in the lowest share that gives about ``IVF_TRAINING_PER_LIST`` tracks a list. A
    hash of the id, so any worker picks its part of the sample alone. Returns a boolean mask."""
    share = IVF_TRAINING_PER_LIST * ivf_lists(n_total) / max(n_total, 1)
    if share >= 1.0:
        return np.ones(len(ids), bool)
    return sample_rank(ids) < np.uint64(int(share * 2.0**64))


def train_ivf(sample: np.ndarray, n_total: int, *, seed: int = 0):
    """An empty faiss inner-product IVF index (exact vectors in each list) for ``n_total`` unit vectors, its
    ``ivf_lists(n_total)`` centroids trained by k-means on ``sample``."""
    import faiss

    lists = max(1, min(ivf_lists(n_total), len(sample)))
    quantiser = faiss.IndexFlatIP(sample.shape[1])
    index = faiss.IndexIVFFlat(quantiser, sample.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(np.ascontiguousarray(sample, np.float32))
    return index


def assign_ivf(index, vectors: np.ndarray) -> np.ndarray:
    """The list of each vector (its nearest centroid): the costly part of filling an index, done where the
    vectors are. Returns ``[shape=(n,)]`` int64."""
    _, lists = index.quantizer.search(np.ascontiguousarray(vectors, np.float32), 1)
    return lists[:, 0].astype(np.int64)


def fill_ivf(index, vectors: np.ndarray, lists: np.ndarray):
    """Add ``vectors`` to ``index`` in their :func:`assign_ivf` lists (rows numbered in the order added)."""
    from faiss.contrib.ivf_tools import add_preassigned

    add_preassigned(index, np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(lists, np.int64))
    return index


def build_ivf_index(vectors: np.ndarray, *, seed: int = 0):
    """An IVF index over unit ``vectors`` in one process: :func:`train_ivf` on :func:`ivf_training_rows` of
    the row numbers, then :func:`fill_ivf`. The embed job does the same steps on its workers."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    index = train_ivf(vectors[ivf_training_rows(np.arange(len(vectors)), len(vectors))], len(vectors), seed=seed)
    return fill_ivf(index, vectors, assign_ivf(index, vectors))


def search_ivf(index, ids: np.ndarray, queries: np.ndarray, query_ids: np.ndarray, k: int,
               nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-``k`` of each query (its own id excluded), as :func:`top_k_cosine` returns them
    (rows the index could not fill are padded with id -1 and similarity -inf)."""
    index.nprobe = nprobe
    sims, rows = index.search(np.ascontiguousarray(queries, np.float32), k + 1)
    found = np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)
    dropped = (found == query_ids[:, None]) | (rows < 0)
    sims = np.where(dropped, -np.inf, sims)
    found = np.where(dropped, -1, found)
    order = np.lexsort((np.where(dropped, np.iinfo(np.int64).max, found), -sims), axis=-1)[:, :k]
    return np.take_along_axis(found, order, axis=1), np.take_along_axis(sims, order, axis=1).astype(np.float32)


def recall_at(approximate: list[np.ndarray], exact: np.ndarray, k: int = 10) -> float:
    """Share of the exact top-``k`` found in the approximate top-``k``, averaged over queries."""
    return float(np.mean([len(set(a[:k].tolist()) & set(e[:k].tolist())) / max(1, min(k, len(e)))
                          for a, e in zip(approximate, exact)]))


DIFFUSION_NEIGHBOURS = 5  # the default M of the diffusion (embed, add, evaluate): benchmarks/RESULTS.md, issue 22
DIFFUSION_POWER = 3.0  # a neighbour's weight in the diffusion: its cosine to this power (alpha-DBA's usual 3)


def diffuse(vectors: np.ndarray, neighbour_rows: np.ndarray, similarities: np.ndarray, *,
            power: float = DIFFUSION_POWER) -> np.ndarray:
    """Database-side augmentation over the k-nearest-neighbour graph (Radenović et al., alpha-DBA): each
    track's vector becomes the unit mean of itself and its neighbours, each neighbour weighted by its cosine
    to the track raised to ``power`` (negative cosines weigh nothing). Training-free and catalogue-level:
    tracks that many close tracks agree on pull together, so clusters tighten and near-duplicates meet.

    ``vectors [n, d]`` unit rows; ``neighbour_rows [n, m]`` row numbers into ``vectors`` (-1 = no neighbour);
    ``similarities [n, m]`` their cosines. Returns ``[n, d]`` unit rows."""
    vectors = np.asarray(vectors, np.float32)
    rows = np.asarray(neighbour_rows)
    gathered = vectors[np.maximum(rows, 0)]  # [n, m, d]
    summed = vectors + np.einsum("nm,nmd->nd", diffusion_weights(rows, similarities, power), gathered)
    return l2_normalise(summed)


def diffuse_exact(vectors: np.ndarray, neighbours: int = DIFFUSION_NEIGHBOURS,
                  power: float = DIFFUSION_POWER) -> np.ndarray:
    """:func:`diffuse` over the exact ``neighbours``-nearest graph of ``vectors [n, d]`` (unit rows), in one
    process: what ``wavelist embed`` computes in the job, for a catalogue that fits in memory."""
    rows = np.arange(len(vectors))
    neighbour_rows, similarities = top_k_cosine(vectors, rows, vectors, rows, neighbours)
    return diffuse(vectors, neighbour_rows, similarities, power=power)


def diffusion_weights(neighbour_ids: np.ndarray, similarities: np.ndarray, power: float) -> np.ndarray:
    """The weight of each neighbour in :func:`diffuse`: its cosine (clipped at 0) to ``power``; 0 for padding."""
    return np.where(np.asarray(neighbour_ids) >= 0,
                    np.clip(np.nan_to_num(similarities, neginf=0.0), 0.0, 1.0) ** power, 0.0).astype(np.float32)


def sum_by_track(track_ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``vectors`` summed per track id: ``(sorted unique ids, sums)`` (float32)."""
    ids, rows = np.unique(np.asarray(track_ids, np.int64), return_inverse=True)
    sums = np.zeros((len(ids), vectors.shape[1]), np.float32)
    np.add.at(sums, rows, np.asarray(vectors, np.float32))
    return ids, sums
