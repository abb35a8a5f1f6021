"""Stage 5, diffusion: each vector becomes the weighted unit mean of itself and its nearest
(:class:`Diffuse`), computed by buckets of track id; ``wavelist add`` diffuses only its new tracks
(:class:`DiffuseNew`)."""
from __future__ import annotations

import apache_beam as beam
import numpy as np

from beam_jobs.embed.batches import (TRACKS_PER_BUCKET, VECTOR_BATCH, MergeTopK, NeighbourBlock, count_batches,
                                     split_by_block)
from beam_jobs.embed.exact_neighbours import NewAmongAll, new_track_matrix
from core import vectors as recipe
from core.neighbours import block_of, diffuse, diffusion_weights, sum_by_track


def diffusion_requests(block: NeighbourBlock, n_buckets: int, power: float):
    """A :data:`NeighbourBlock` -> ``(bucket of the neighbour, ("want", track ids, neighbour ids, weights))``:
    which neighbour vectors each track needs, sent to the bucket that holds them."""
    track_ids, ids, sims = block
    weights = diffusion_weights(ids, sims, power)
    keep = weights > 0
    tracks = np.broadcast_to(np.asarray(track_ids, np.int64)[:, None], ids.shape)[keep]
    wanted, weights = np.asarray(ids, np.int64)[keep], weights[keep]
    buckets = block_of(wanted, n_buckets)
    for bucket in np.unique(buckets).tolist():
        rows = buckets == bucket
        yield bucket, ("want", tracks[rows], wanted[rows], weights[rows])


def tagged_by_bucket(batch: tuple[np.ndarray, np.ndarray], n_buckets: int):
    """``(ids, vectors)`` -> ``(bucket, ("have", ids, vectors))`` per bucket (:func:`split_by_block`)."""
    for bucket, (ids, vectors) in split_by_block(batch, n_buckets):
        yield bucket, ("have", ids, vectors)


def weighted_neighbours(bucket_and_parts, n_buckets: int):
    """One bucket's vectors and the requests for them -> ``(bucket of the track, ("sum", track ids, summed
    weighted neighbour vectors))``: each track's share of its diffused vector from this bucket."""
    _, parts = bucket_and_parts
    parts = list(parts)
    have = [p for p in parts if p[0] == "have"]
    wants = [p for p in parts if p[0] == "want"]
    if not have or not wants:
        return
    ids = np.concatenate([p[1] for p in have])
    vectors = np.concatenate([p[2] for p in have])
    order = np.argsort(ids)
    tracks = np.concatenate([p[1] for p in wants])
    wanted = np.concatenate([p[2] for p in wants])
    weights = np.concatenate([p[3] for p in wants])
    rows = order[np.searchsorted(ids, wanted, sorter=order)]
    summed_ids, sums = sum_by_track(tracks, weights[:, None] * vectors[rows])
    buckets = block_of(summed_ids, n_buckets)
    for bucket in np.unique(buckets).tolist():
        keep = buckets == bucket
        yield bucket, ("sum", summed_ids[keep], sums[keep])


def diffused_batches(bucket_and_parts, batch_size: int = VECTOR_BATCH):
    """One bucket's own vectors and the weighted sums of their neighbours -> ``(ids, unit vectors)`` batches
    of up to ``batch_size`` tracks, sorted by id (:func:`core.neighbours.diffuse`, computed by buckets)."""
    _, parts = bucket_and_parts
    parts = list(parts)
    ids, summed = sum_by_track(np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))
    own = np.isin(ids, np.concatenate([p[1] for p in parts if p[0] == "have"]))
    ids, vectors = ids[own], recipe.unit(summed[own])
    for start in range(0, len(ids), batch_size):
        yield ids[start:start + batch_size], vectors[start:start + batch_size]


class Diffuse(beam.PTransform):
    """``(ids, unit vectors)`` batches -> the same tracks' vectors after diffusion over their nearest
    (:func:`core.neighbours.diffuse`, weights: cosine to ``power``): the neighbour lists from ``search`` (exact
    blocks or the index), then two joins by bucket of track id (the neighbours' vectors fetched where they live, the
    weighted sums sent home), so no step holds more than one bucket of ``tracks_per_bucket`` tracks."""

    def __init__(self, power: float, search: beam.PTransform, tracks_per_bucket: int = TRACKS_PER_BUCKET):
        super().__init__()
        self._power, self._search, self._tracks_per_bucket = power, search, tracks_per_bucket

    def expand(self, batches):
        size = self._tracks_per_bucket
        n_buckets = beam.pvalue.AsSingleton(
            count_batches(batches) | "Buckets" >> beam.Map(lambda n: max(1, -(-n // size))))
        lists = batches | "Graph" >> self._search
        have = batches | "Have" >> beam.FlatMap(tagged_by_bucket, n_buckets)
        wants = lists | "Want" >> beam.FlatMap(diffusion_requests, n_buckets, self._power)
        sums = ((have, wants) | "Requests" >> beam.Flatten() | "AtNeighbours" >> beam.GroupByKey()
                | "Weighted" >> beam.FlatMap(weighted_neighbours, n_buckets))
        return ((have, sums) | "Sums" >> beam.Flatten() | "AtTracks" >> beam.GroupByKey()
                | "Diffused" >> beam.FlatMap(diffused_batches))


def vectors_of(batch: tuple[np.ndarray, np.ndarray], wanted: np.ndarray):
    """The ``(track_id, vector)`` of the tracks of an ``(ids, vectors)`` batch whose id is in ``wanted``."""
    ids, vectors = batch
    for row in np.flatnonzero(np.isin(ids, wanted)).tolist():
        yield int(ids[row]), vectors[row]


def diffused_new(lists: list[tuple[int, tuple[np.ndarray, np.ndarray]]], new: tuple[np.ndarray, np.ndarray],
                 old_vectors: dict[int, np.ndarray], power: float) -> tuple[np.ndarray, np.ndarray]:
    """New tracks' ``(track_id, (neighbour ids, similarities))`` lists -> their ``(ids, vectors)`` after the
    diffusion (:func:`core.neighbours.diffuse`) over those neighbours, found among ``new`` (every new track's
    undiffused vector) and ``old_vectors`` (the old ones the lists name)."""
    new_ids, new_vectors = new
    old_ids = np.array(sorted(old_vectors), np.int64)
    catalogue_ids = np.concatenate([new_ids, old_ids])
    catalogue = np.concatenate([new_vectors, np.stack([old_vectors[int(t)] for t in old_ids])]
                               if len(old_ids) else [new_vectors]).astype(np.float32)
    row_of = {int(t): row for row, t in enumerate(catalogue_ids)}
    tracks = np.array(sorted(t for t, _ in lists), np.int64)
    found = dict(lists)
    width = max((len(found[int(t)][0]) for t in tracks), default=0)
    rows = np.full((len(catalogue), width), -1, np.int64)  # only the listed new tracks' rows are filled
    sims = np.zeros((len(catalogue), width), np.float32)
    for t in tracks.tolist():
        ids, similarities = found[t]
        rows[row_of[t], :len(ids)] = [row_of[int(i)] for i in ids]
        sims[row_of[t], :len(ids)] = similarities
    diffused = diffuse(catalogue, rows, sims, power=power)
    return tracks, diffused[[row_of[int(t)] for t in tracks]]


class DiffuseNew(beam.PTransform):
    """``(new, old)``, two PCollections of ``(ids, undiffused vectors)`` batches -> the new tracks' ``(ids,
    vectors)`` after the diffusion over their ``neighbours`` nearest among old and new (what embed gives them)."""

    def __init__(self, neighbours: int, power: float):
        super().__init__()
        self._neighbours, self._power = neighbours, power

    def expand(self, new_and_old):
        new, old = new_and_old
        m = self._neighbours
        new_matrix = new_track_matrix(new)
        lists = old | "NewAmongAll" >> NewAmongAll(new_matrix, m) | "Merge" >> beam.CombinePerKey(MergeTopK(m))
        wanted = beam.pvalue.AsSingleton(lists | "WantedIds" >> beam.FlatMap(lambda pair: pair[1][0].tolist())
                                         | "Wanted" >> beam.combiners.ToList() | "Unique" >> beam.Map(np.unique))
        old_vectors = beam.pvalue.AsDict(old | "WantedVectors" >> beam.FlatMap(vectors_of, wanted))
        return (lists | "Batches" >> beam.BatchElements(min_batch_size=256, max_batch_size=VECTOR_BATCH)
                | "Diffused" >> beam.Map(diffused_new, new_matrix, old_vectors, self._power))
