"""Stage 4, approximate neighbours: a faiss IVF index over the whole catalogue, built once, its recall measured
against exact search, searched by every worker (:class:`IndexNeighbours`)."""
from __future__ import annotations

import logging
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from beam_jobs import common
from beam_jobs.embed.batches import stack_block
from core.neighbours import top_k_faiss
from schemas.layout import TableFiles
from storage import files

log = logging.getLogger(__name__)


INDEX_FILE = TableFiles.INDEX

DIFFUSION_INDEX_FILE = TableFiles.DIFFUSION_INDEX


def build_index_file(batches: list[tuple[np.ndarray, np.ndarray]], path: str, nprobe: int | None,
                     target_recall: float = 0.95, recall_queries: int = 1000) -> dict[str, Any]:
    """Build the IVF index over the whole catalogue, save it with its ids to ``path`` (any Beam file
    system), and measure its recall@10 against exact search on up to ``recall_queries`` sampled tracks.
    ``nprobe`` None: the fewest lists (1, 2, 4, ... all) whose recall reaches ``target_recall``; search time
    grows with ``nprobe``, and clustered catalogues need far fewer lists than uniform noise.
    Returns the report (with the ``nprobe`` to search with), the file's path under ``"path"``."""
    import io

    import faiss

    from core.neighbours import build_ivf_index, recall_at, search_ivf

    _, ids, vectors = stack_block(0, batches)
    del batches
    index = build_ivf_index(vectors)
    # two disjoint samples: one chooses nprobe, the other reports the recall of that choice
    drawn = np.random.default_rng(0).permutation(len(ids))
    tuning, held_out = np.sort(drawn[:recall_queries]), np.sort(drawn[recall_queries:2 * recall_queries])
    if len(held_out) == 0:
        held_out = tuning

    def recall_of(sample: np.ndarray):
        """recall@10 of the index on ``sample`` as a function of nprobe (exact search done once)."""
        exact_ids, _ = top_k_faiss(vectors[sample], ids[sample], vectors, ids, 10)
        return lambda probes: recall_at(search_ivf(index, ids, vectors[sample], ids[sample], 10, probes)[0],
                                        exact_ids, 10)

    tried: dict[int, float] = {}
    if nprobe is None:
        tuning_recall = recall_of(tuning)
        for probes in sorted({*(2**i for i in range(int(np.log2(index.nlist)) + 1)), index.nlist}):
            tried[probes] = tuning_recall(probes)
            if tried[probes] >= target_recall:
                break
        nprobe = probes
    reported = recall_of(held_out)(nprobe)
    buffer = io.BytesIO()
    np.savez(buffer, ids=ids, index=faiss.serialize_index(index))
    files.write_bytes(path, buffer.getvalue())
    log.info("neighbour index: %d tracks in %d lists -> %s", len(ids), index.nlist, path)
    return {"mode": "approximate", "index": "faiss IVFFlat, inner product", "lists": int(index.nlist),
            "nprobe": int(nprobe), "recall_queries": int(len(held_out)), "recall@10": reported,
            "target_recall": target_recall, "tuning recall@10 by nprobe": tried, "path": path}


class _LoadedIndex:
    """An index file read into this process (held by a ``shared.Shared`` handle, one per worker)."""

    def __init__(self, path: str):
        import io

        import faiss

        saved = np.load(io.BytesIO(files.read_bytes(path)))
        self.ids = saved["ids"]
        self.index = faiss.deserialize_index(saved["index"])


class SearchIndexFn(beam.DoFn):
    """``(ids, vectors)`` query batches -> :data:`NeighbourBlock`; the index file is loaded once per worker
    process, on its first batch (the file's path arrives as a side input once the index is built)."""

    def __init__(self, k: int, index_handle: shared.Shared):
        self._k, self._index_handle = k, index_handle
        self._queries = Metrics.counter(common.METRICS_NAMESPACE, "neighbour_queries")

    def setup(self) -> None:
        import faiss

        faiss.omp_set_num_threads(1)  # one worker per core already

    def process(self, batch: tuple[np.ndarray, np.ndarray], report: dict[str, Any]):
        from core.neighbours import search_ivf

        path = report["path"]
        loaded = self._index_handle.acquire(lambda: _LoadedIndex(path), tag=path)
        query_ids, queries = batch
        found, sims = search_ivf(loaded.index, loaded.ids, queries, query_ids, self._k, report["nprobe"])
        self._queries.inc(len(query_ids))
        yield query_ids, found, sims


class IndexNeighbours(beam.PTransform):
    """``(ids, vectors)`` batches -> :data:`NeighbourBlock` elements from a faiss IVF index.

    The index is built once over the whole catalogue (which arrives in batches, not one element per track)
    and written to ``index_dir``; each worker loads it once and searches batches of queries, probing
    ``nprobe`` lists. Its recall@10 against exact search, on up to 1,000 sampled queries, goes to ``report``.
    """

    def __init__(self, k: int, nprobe: int | None, index_dir: str, target_recall: float = 0.95,
                 file: str = INDEX_FILE):
        super().__init__()
        self._k, self._nprobe, self._index_dir, self._file = k, nprobe, index_dir, file
        self._target_recall = target_recall

    def expand(self, batches):
        path = files.join(self._index_dir, self._file)
        built = (batches | "Catalogue" >> beam.combiners.ToList()
                 | "BuildIndex" >> beam.Map(build_index_file, path, self._nprobe, self._target_recall))
        self.report = built | "Report" >> beam.Map(lambda report: {k: v for k, v in report.items() if k != "path"})
        return batches | "Search" >> beam.ParDo(SearchIndexFn(self._k, shared.Shared()),
                                                beam.pvalue.AsSingleton(built))
