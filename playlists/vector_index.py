"""An approximate index of a catalogue's vectors (faiss IVF): the tracks near given points without a scan of the
whole catalogue. A journey over a large catalogue takes its candidates from it (:mod:`playlists.journey`)."""
from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from core.neighbours import IVF_TRAINING_PER_LIST

# Catalogues larger than this take a journey's candidates from the index; smaller ones scan every track, exactly
# and without building an index: at 100,000 tracks a journey cost 6.8 ms of CPU either way, at 1,000,000 83 ms by
# the scan and 11 ms by the index (benchmarks/RESULTS.md, issue 34).
INDEX_ABOVE = 200_000
NPROBE = 32  # lists searched per point (benchmarks/RESULTS.md, issue 34)


@contextmanager
def _one_faiss_thread():
    """faiss's OpenMP threads limited to one in this thread (a query's search is small; a server runs several
    queries at once), as before afterwards. OpenMP keeps the setting per calling thread."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class VectorIndex:
    """A faiss inverted-file index (IVF, inner product, 8-bit scalar-quantised codes) of unit ``vectors``: about
    one list per ``sqrt(n)`` tracks, k-means (spherical, seeded) trained on a sample. It answers which rows lie
    near given points; what is done with them uses the exact vectors."""

    def __init__(self, vectors: np.ndarray, *, seed: int = 0):
        import faiss

        started = time.perf_counter()
        n, dim = vectors.shape
        self.lists = max(1, int(np.sqrt(n)))
        index = faiss.index_factory(dim, f"IVF{self.lists},SQ8", faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True
        index.cp.niter = 10
        index.cp.seed = seed
        index.cp.min_points_per_centroid = 1  # a small catalogue has few tracks per list: no warning about it
        sample = np.random.default_rng(seed).choice(n, min(n, IVF_TRAINING_PER_LIST * self.lists), replace=False)
        index.train(np.ascontiguousarray(vectors[np.sort(sample)]))
        index.add(vectors)
        self._index = index
        self.build_seconds = time.perf_counter() - started

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        """Bytes the index holds: codes, ids and centroids."""
        return len(self) * (self._index.code_size + 8) + self.lists * self._index.d * 4

    def near(self, points: np.ndarray, k: int, nprobe: int = NPROBE) -> np.ndarray:
        """Rows among the ``k`` most similar to each of ``points`` (searching ``nprobe`` lists per point),
        sorted, each once."""
        import faiss

        params = faiss.SearchParametersIVF(nprobe=min(nprobe, self.lists))
        with _one_faiss_thread():
            _, rows = self._index.search(np.ascontiguousarray(points, dtype=np.float32), k, params=params)
        return np.unique(rows[rows >= 0])
