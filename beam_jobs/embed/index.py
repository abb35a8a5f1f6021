"""Stage 4, approximate neighbours: a faiss IVF index over the whole catalogue, its centroids trained on a sample
(one worker), each track's list found on every worker, the lists filled on one, its recall measured against exact
search, searched by every worker (:class:`IndexNeighbours`)."""
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


def training_part(batch: tuple[np.ndarray, np.ndarray], n_total: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of a batch that trains the quantiser (:func:`~core.neighbours.ivf_training_rows`)."""
    from core.neighbours import ivf_training_rows

    ids, vectors = batch
    chosen = ivf_training_rows(ids, n_total)
    return ids[chosen], vectors[chosen]


def train_index(parts: list[tuple[np.ndarray, np.ndarray]], n_total: int) -> bytes:
    """The training sample's parts -> the serialised empty index, its centroids trained (one worker, on
    about 64 tracks a list: 256,000 of 1,000,000)."""
    import faiss

    from core.neighbours import train_ivf

    _, ids, vectors = stack_block(0, parts)
    faiss.omp_set_num_threads(1)  # one worker per core already; and one thread's k-means gives the same centroids
    index = train_ivf(vectors, n_total)
    Metrics.counter(common.METRICS_NAMESPACE, "index_training_tracks").inc(len(ids))
    return faiss.serialize_index(index).tobytes()


class SharedIndex:
    """A serialised faiss index (or None) deserialised once per worker process: hold it by a ``shared.Shared``
    handle, tagged by :func:`index_tag`."""

    def __init__(self, serialised: bytes | None):
        import faiss

        self.index = None if serialised is None else faiss.deserialize_index(np.frombuffer(serialised, np.uint8))


def index_tag(serialised: bytes | None) -> str:
    """The ``shared.Shared`` tag of a serialised index: another index, another tag."""
    return "none" if serialised is None else str(hash(serialised))


class AssignListsFn(beam.DoFn):
    """``(ids, vectors)`` batches -> ``(ids, vectors, lists)``: each vector's list in the trained index, found
    on every worker (the fill's costly part: each vector against every centroid)."""

    def __init__(self, template_handle: shared.Shared):
        self._template_handle = template_handle

    def setup(self) -> None:
        import faiss

        faiss.omp_set_num_threads(1)  # one worker per core already

    def process(self, batch: tuple[np.ndarray, np.ndarray], serialised: bytes):
        from core.neighbours import assign_ivf

        template = self._template_handle.acquire(lambda: SharedIndex(serialised), tag=index_tag(serialised))
        ids, vectors = batch
        yield ids, vectors, assign_ivf(template.index, vectors)


def probe_steps(lists: int) -> list[int]:
    """The numbers of lists the automatic nprobe tries, in order: 1, 2, 3, 4, 6, 8, 12, ... and all (steps of
    1.5 and 2: search time grows with nprobe, so a step past the target costs at most half again)."""
    steps = {lists}
    for power in range(int(np.log2(max(lists, 1))) + 1):
        steps |= {2**power, 3 * 2**power // 2} if power else {1}
    return sorted(step for step in steps if 1 <= step <= lists)


def build_index_file(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], serialised: bytes, path: str,
                     nprobe: int | None, target_recall: float = 0.95, recall_queries: int = 1000) -> dict[str, Any]:
    """Fill the trained index with the catalogue's ``(ids, vectors, lists)`` parts (lists found on the
    workers: here only copied in), save it with its ids to ``path`` (any file system), and measure its
    recall@10 against exact search on up to ``recall_queries`` sampled tracks.
    ``nprobe`` None: the fewest lists (:func:`probe_steps`) whose recall reaches ``target_recall``; search time
    grows with ``nprobe``, and clustered catalogues need far fewer lists than uniform noise.
    Returns the report (with the ``nprobe`` to search with), the file's path under ``"path"``."""
    import io

    import faiss

    from core.neighbours import fill_ivf, recall_at, search_ivf

    ids = np.concatenate([part[0] for part in parts])
    vectors = np.concatenate([part[1] for part in parts]).astype(np.float32, copy=False)
    lists = np.concatenate([part[2] for part in parts])
    del parts
    index = fill_ivf(faiss.deserialize_index(np.frombuffer(serialised, np.uint8)), vectors, lists)
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
        for probes in probe_steps(index.nlist):
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

    The index is built once over the whole catalogue (which arrives in batches, not one element per track):
    its centroids trained on a sample that each worker picks from its batches by a hash of the id, each
    vector's list found on the worker that holds it, the lists filled and written to ``index_dir`` by one; each worker loads it once and searches batches of queries, probing
    ``nprobe`` lists. Its recall@10 against exact search, on up to 1,000 sampled queries, goes to ``report``.
    """

    def __init__(self, k: int, nprobe: int | None, index_dir: str, target_recall: float = 0.95,
                 file: str = INDEX_FILE):
        super().__init__()
        self._k, self._nprobe, self._index_dir, self._file = k, nprobe, index_dir, file
        self._target_recall = target_recall

    def expand(self, batches):
        path = files.join(self._index_dir, self._file)
        total = (batches | "Count" >> beam.Map(lambda batch: len(batch[0]))
                 | "Total" >> beam.CombineGlobally(sum))
        trained = (batches | "TrainingSample" >> beam.Map(training_part, beam.pvalue.AsSingleton(total))
                   | "GatherSample" >> beam.combiners.ToList()
                   | "Train" >> beam.Map(train_index, beam.pvalue.AsSingleton(total)))
        built = (batches | "AssignLists" >> beam.ParDo(AssignListsFn(shared.Shared()), beam.pvalue.AsSingleton(trained))
                 | "Catalogue" >> beam.combiners.ToList()
                 | "Fill" >> beam.Map(build_index_file, beam.pvalue.AsSingleton(trained), path, self._nprobe,
                                      self._target_recall))
        self.report = built | "Report" >> beam.Map(lambda report: {k: v for k, v in report.items() if k != "path"})
        return batches | "Search" >> beam.ParDo(SearchIndexFn(self._k, shared.Shared()),
                                                beam.pvalue.AsSingleton(built))
