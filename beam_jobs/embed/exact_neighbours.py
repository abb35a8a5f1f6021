"""Stage 3, exact neighbours: cosine top-k block against block (:class:`BlockNeighbours`), and the partial
lists ``wavelist add`` merges (new tracks among old ones, old among new, new among new, the stored lists)."""
from __future__ import annotations

import apache_beam as beam
import numpy as np

from beam_jobs.embed.batches import (VECTOR_BATCH, MergeTopK, ReadTable, count_batches, split_by_block,
                                     stack_block, stack_new)
from core import vectors as recipe
from core.neighbours import merge_block_top_k, stack_lists, top_k_cosine, top_k_faiss


def auto_block_size(n: int) -> int:
    """About 64 sqrt(n), at least 4,096: blocks grow with the catalogue so that the data sent to the block
    pairs (each block goes to 2 n_blocks pairs) grows as n^1.5 rather than n^2; two blocks of a
    million-track catalogue still take only 16 MB."""
    return max(4096, int(64 * np.sqrt(n)))


def block_pairs(block: int, ids: np.ndarray, vectors: np.ndarray, n_blocks: int):
    """Send a block to every (query block, candidate block) pair it belongs to."""
    for other in range(n_blocks):
        yield (block, other), ("query", ids, vectors)
        if other != block:
            yield (other, block), ("candidates", ids, vectors)


def partial_top_k(pair_and_parts, k: int):
    """Top k of one query block among one candidate block: ``(query block, (query ids, ids, similarities))``
    with the query ids in the block's (sorted) order, so partials of a block line up row by row."""
    (query_block, candidate_block), parts = pair_and_parts
    parts = list(parts)
    query = next(p for p in parts if p[0] == "query")
    candidates = query if query_block == candidate_block else next(p for p in parts if p[0] == "candidates")
    _, query_ids, query_vectors = query
    _, candidate_ids, candidate_vectors = candidates
    import faiss

    faiss.omp_set_num_threads(1)  # one worker per core already
    neighbour_ids, similarities = top_k_faiss(query_vectors, query_ids, candidate_vectors, candidate_ids, k)
    yield query_block, (query_ids, neighbour_ids, similarities)


class MergeBlockTopK(beam.CombineFn):
    """Partial top-k matrices of one query block -> its top k, merged a whole block at a time."""

    def __init__(self, k: int):
        self._k = k

    def create_accumulator(self):
        return None

    def add_input(self, accumulator, partial):
        return self.merge_accumulators([accumulator, partial])

    def merge_accumulators(self, accumulators):
        parts = [a for a in accumulators if a is not None]
        if not parts:
            return None
        query_ids = parts[0][0]
        ids, sims = merge_block_top_k([(i, s) for _, i, s in parts], self._k)
        return query_ids, ids, sims

    def extract_output(self, accumulator):
        return accumulator


class BlockNeighbours(beam.PTransform):
    """``(ids, vectors)`` batches -> :data:`NeighbourBlock` elements: exact cosine top-k, block against block.

    The catalogue is cut into blocks of ``block_size`` tracks (default :func:`auto_block_size`) by a hash
    of the id; every pair of blocks meets once on some worker, which computes the top k of the query block
    among the candidate block (``faiss.knn``); a CombinePerKey merges the partial lists of each query block,
    a whole block at a time. No worker holds more than two blocks; the work is n_blocks^2 independent pairs.
    """

    def __init__(self, k: int, block_size: int | None = None):
        super().__init__()
        self._k = k
        self._block_size = block_size

    def expand(self, batches):
        k, size = self._k, self._block_size
        n_blocks = (count_batches(batches)
                    | "Blocks" >> beam.Map(lambda n: max(1, -(-n // (size or auto_block_size(n))))))
        return (
            batches
            | "SplitByBlock" >> beam.FlatMap(split_by_block, beam.pvalue.AsSingleton(n_blocks))
            | "GroupBlocks" >> beam.GroupByKey()
            | "StackBlocks" >> beam.MapTuple(stack_block)
            | "ToBlockPairs" >> beam.FlatMap(lambda b, n: block_pairs(*b, n), beam.pvalue.AsSingleton(n_blocks))
            | "MeetBlocks" >> beam.GroupByKey()
            | "PartialTopK" >> beam.FlatMap(partial_top_k, k)
            | "MergeTopK" >> beam.CombinePerKey(MergeBlockTopK(k))
            | "Lists" >> beam.Values()
        )


def old_among_new(old: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray], k: int):
    """Each old track of the batch ``old``: its top k among the new tracks, ``(track_id, (ids, similarities))``."""
    ids, sims = top_k_cosine(old[1], old[0], new[1], new[0], k)
    yield from ((int(t), (i, s)) for t, i, s in zip(old[0], ids, sims))


def new_among_old(old: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray], k: int):
    """Each new track: its top k among the old tracks of the batch ``old`` (a partial list)."""
    if not len(new[0]) or not len(old[0]):
        return
    ids, sims = top_k_cosine(new[1], new[0], old[1], old[0], k)
    yield from ((int(t), (i, s)) for t, i, s in zip(new[0], ids, sims))


def new_among_new(new: tuple[np.ndarray, np.ndarray], k: int):
    ids, vectors = new
    found, sims = top_k_cosine(vectors, ids, vectors, ids, k)
    yield from ((int(t), (i, s)) for t, i, s in zip(ids, found, sims))


def new_track_matrix(new):
    """The new tracks' ``(ids, vectors)`` batches stacked once, as a side input every worker reads (``wavelist add``
    and ``update`` add a few tracks to many)."""
    return beam.pvalue.AsSingleton(new | "NewAll" >> beam.combiners.ToList() | "NewMatrix" >> beam.Map(stack_new))


class NewAmongAll(beam.PTransform):
    """Old ``(ids, vectors)`` batches -> partial lists ``(new track, (ids, similarities))``: each new track's top
    ``k`` among each old batch and among the new tracks (``new_matrix``, :func:`new_track_matrix`), to merge
    with :class:`~beam_jobs.embed.batches.MergeTopK`."""

    def __init__(self, new_matrix, k: int):
        super().__init__()
        self._new_matrix, self._k = new_matrix, k

    def expand(self, old):
        k = self._k
        among_old = old | "AmongOld" >> beam.FlatMap(new_among_old, self._new_matrix, k)
        among_new = (old.pipeline | "One" >> beam.Create([None])
                     | "AmongNew" >> beam.FlatMap(lambda _, matrix: new_among_new(matrix, k), self._new_matrix))
        return (among_old, among_new) | "Partials" >> beam.Flatten()


def stored_lists(table):
    """A batch of ``neighbours.parquet`` rows -> ``(track_id, (ids, similarities))`` per track in it, by rank.
    A track whose rows span two batches gives two partial lists, which the merge joins."""
    table = table.sort_by([("track_id", "ascending"), ("rank", "ascending")])
    track_ids = table["track_id"].to_numpy()
    ids, sims = table["neighbour_id"].to_numpy(), table["similarity"].to_numpy()
    starts = recipe.track_starts(track_ids)
    for start, stop in zip(starts, np.r_[starts[1:], len(track_ids)].astype(int)):
        yield int(track_ids[start]), (ids[start:stop].astype(np.int64), sims[start:stop].astype(np.float32))


class ExtendNeighbours(beam.PTransform):
    """``(new, old)`` ``(ids, vectors)`` batches -> :data:`~beam_jobs.embed.batches.NeighbourBlock` elements of every
    track: the lists of ``stored`` (the old tracks' ``neighbours.parquet``) merged with each old track's best new
    tracks, and each new track's top k among old and new. A merged top k of partial lists is the top k of the
    whole, so the lists equal those of a full recomputation."""

    def __init__(self, k: int, stored: str):
        super().__init__()
        self._k, self._stored = k, stored

    def expand(self, new_and_old):
        new, old = new_and_old
        k = self._k
        new_matrix = new_track_matrix(new)
        new_side = old | "NewAmongAll" >> NewAmongAll(new_matrix, k)
        old_side = old | "OldAmongNew" >> beam.FlatMap(old_among_new, new_matrix, k)
        stored = old.pipeline | "ReadStored" >> ReadTable(self._stored) | "StoredLists" >> beam.FlatMap(stored_lists)
        return ((stored, old_side, new_side) | "AllPartials" >> beam.Flatten()
                | "Merge" >> beam.CombinePerKey(MergeTopK(k))
                | "ListBatches" >> beam.BatchElements(min_batch_size=256, max_batch_size=VECTOR_BATCH)
                | "Blocks" >> beam.Map(stack_lists))
