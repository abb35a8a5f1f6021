"""Composites that only the tests and benchmarks use: per-track vectors straight to neighbour lists, exact or
from the index (the jobs stack their vectors once, in the tail, and search the batches)."""
from __future__ import annotations

import apache_beam as beam

from beam_jobs.embed.batches import VECTOR_BATCH, StackVectors
from beam_jobs.embed.exact_neighbours import BlockNeighbours
from beam_jobs.embed.index import IndexNeighbours


class NearestNeighbours(beam.PTransform):
    """``(track_id, unit vector)`` -> :data:`NeighbourBlock` elements: :class:`BlockNeighbours` of the vectors
    stacked in batches of up to :data:`VECTOR_BATCH` tracks (never one element per track between workers)."""

    def __init__(self, k: int, block_size: int | None = None):
        super().__init__()
        self._k = k
        self._block_size = block_size

    def expand(self, vectors):
        return (vectors | "Vectors" >> StackVectors(VECTOR_BATCH)
                | "Search" >> BlockNeighbours(self._k, self._block_size))


class ApproximateNeighbours(beam.PTransform):
    """``(track_id, unit vector)`` -> :data:`NeighbourBlock` elements: :class:`IndexNeighbours` of the vectors
    stacked in batches of up to ``batch_size`` tracks; its recall report is ``report``."""

    def __init__(self, k: int, nprobe: int | None, index_dir: str, batch_size: int = VECTOR_BATCH,
                 target_recall: float = 0.95):
        super().__init__()
        self._batch_size = batch_size
        self._search = IndexNeighbours(k, nprobe, index_dir, target_recall)

    def expand(self, vectors):
        lists = vectors | "Vectors" >> StackVectors(self._batch_size) | "Index" >> self._search
        self.report = self._search.report
        return lists
