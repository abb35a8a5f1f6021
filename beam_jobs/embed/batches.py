"""Vectors between workers: ``(ids [m], vectors [m, d])`` batches (never one element per track), blocks and
buckets of them by a hash of the id, the :data:`NeighbourBlock` the neighbour stages emit, and tables of vectors
(``embeddings.parquet``'s schema) turned into batches and back."""
from __future__ import annotations

from typing import Iterable

import apache_beam as beam
import numpy as np

from beam_jobs import common
from core.neighbours import block_of, merge_top_k


VECTOR_BATCH = 4096  # tracks per element when vectors move between workers

TRACKS_PER_BUCKET = 100_000


NeighbourBlock = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Neighbour lists of many tracks at once: ``(track ids [m], neighbour ids [m, k], similarities [m, k])``,
best first; a row the search could not fill is padded with id -1 (see :func:`core.neighbours.stack_lists`).
The neighbour transforms emit these rather than one element per track: a million tracks are a few hundred
elements to move between workers instead of a million."""


def stack_batch(batch: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """A batch of ``(track_id, vector)`` -> ``(ids [m], vectors [m, d])`` in batch order."""
    return np.array([i for i, _ in batch], np.int64), np.stack([v for _, v in batch]).astype(np.float32)


def split_by_block(batch: tuple[np.ndarray, np.ndarray], n_blocks: int):
    """``(ids, vectors)`` -> ``(block, (ids, vectors))`` for each block that the batch has tracks of."""
    ids, vectors = batch
    blocks = block_of(ids, n_blocks)
    for block in np.unique(blocks).tolist():
        rows = blocks == block
        yield block, (ids[rows], vectors[rows])


def stack_block(block: int, parts: Iterable[tuple[np.ndarray, np.ndarray]]):
    """All pieces of one block -> ``(block, ids, vectors)``, rows sorted by id."""
    parts = list(parts)
    ids = np.concatenate([i for i, _ in parts])
    vectors = np.concatenate([v for _, v in parts])
    order = np.argsort(ids, kind="stable")
    return block, ids[order], vectors[order]


def stack_new(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The new tracks' ``(ids, vectors)`` batches -> one ``(ids, vectors)``, rows sorted by id (none: empty)."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    _, ids, vectors = stack_block(0, parts)
    return ids, vectors


def count_batches(batches):
    """The number of tracks in a PCollection of ``(ids, vectors)`` batches, as a one-element PCollection."""
    return (batches | "Sizes" >> beam.Map(lambda batch: len(batch[0]))
            | "Total" >> beam.CombineGlobally(sum))


class StackVectors(beam.PTransform):
    """``(track_id, vector)`` -> ``(ids [m], vectors [m, d])`` batches of up to ``batch_size`` tracks: the one
    place where the tail turns per-track elements into arrays."""

    def __init__(self, batch_size: int = 4096):
        super().__init__()
        self._batch_size = batch_size

    def expand(self, vectors):
        return (vectors
                | "Batch" >> beam.BatchElements(min_batch_size=min(256, self._batch_size),
                                                max_batch_size=self._batch_size)
                | "Stack" >> beam.Map(stack_batch))


class KeepBest(beam.CombineFn):
    """Inputs -> the best ``size`` of them by a pure merge function ``merge(parts, size)`` (the subclass's
    ``merge``), starting from ``empty``; the accumulator never holds more than ``size`` plus one input."""

    empty: tuple[np.ndarray, np.ndarray]

    def __init__(self, size: int):
        self._size = size

    def create_accumulator(self):
        return self.empty

    def add_input(self, accumulator, part):
        return self.merge([accumulator, part], self._size)

    def merge_accumulators(self, accumulators):
        return self.merge(list(accumulators), self._size)

    def extract_output(self, accumulator):
        return accumulator


class MergeTopK(KeepBest):
    """Partial ``(ids, similarities)`` lists of one track -> its top k (:func:`core.neighbours.merge_top_k`)."""

    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    merge = staticmethod(merge_top_k)


def embedding_table(batch: tuple[np.ndarray, np.ndarray]):
    """An ``(ids, vectors)`` batch -> rows of ``embeddings.parquet`` (sorted by id), built column-wise."""
    import pyarrow as pa

    ids, vectors = batch
    order = np.argsort(ids, kind="stable")
    ids, vectors = ids[order], np.ascontiguousarray(vectors[order], np.float32)
    offsets = np.arange(len(ids) + 1, dtype=np.int32) * np.int32(vectors.shape[1])
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(vectors.reshape(-1)))
    return pa.table({"track_id": pa.array(ids, pa.int64()), "embedding": lists})


def embedding_batch(table) -> tuple[np.ndarray, np.ndarray]:
    """A batch of ``embeddings.parquet`` rows -> ``(ids, vectors)``."""
    lists = table["embedding"].combine_chunks()
    width = int(lists.value_lengths()[0].as_py()) if len(lists) else 0
    vectors = lists.flatten().to_numpy().astype(np.float32).reshape(len(lists), width)
    return table["track_id"].to_numpy().astype(np.int64), vectors


class ReadTable(beam.PTransform):
    """A Parquet table (a folder of shards or one file) -> its pyarrow Tables, read in batches."""

    def __init__(self, table: str, columns: list[str] | None = None):
        super().__init__()
        self._table, self._columns = table, columns

    def expand(self, pipeline):
        return pipeline | "Read" >> beam.io.ReadFromParquetBatched(common.table_pattern(self._table),
                                                                    columns=self._columns)


class ReadVectors(beam.PTransform):
    """A table of vectors (``embeddings.parquet``'s schema, a folder of shards or one file) -> ``(ids, vectors)``
    batches."""

    def __init__(self, table: str):
        super().__init__()
        self._table = table

    def expand(self, pipeline):
        return pipeline | "Read" >> ReadTable(self._table) | "Vectors" >> beam.Map(embedding_batch)
