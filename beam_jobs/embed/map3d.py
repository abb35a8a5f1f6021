"""Stage 6, the map: a 3-D layout of a sample (:func:`~core.neighbours.sample_layout`), every other track placed
beside its nearest sampled tracks
(:class:`MapCoordinates`); ``wavelist add`` and ``update`` place new tracks beside their nearest old ones
(:class:`PlaceNewTracks`)."""
from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from beam_jobs import common
from beam_jobs.embed.batches import VECTOR_BATCH, KeepBest, MergeTopK
from beam_jobs.embed.exact_neighbours import new_among_old, new_track_matrix
from beam_jobs.embed.index import SharedIndex, index_tag
from core.neighbours import (MAP_METHOD, MAP_NEIGHBOURS, MAP_SAMPLE, nearest_rows, placement_index, sample_layout,
                             smallest_by_rank)


def map_table(ids: np.ndarray, coords: np.ndarray):
    """Map rows ``track_id, x, y, z`` for ``ids`` and their ``[n, 3]`` coordinates, sorted by id."""
    import pyarrow as pa

    order = np.argsort(ids, kind="stable")
    coords = np.asarray(coords, np.float32)[order]
    return pa.table({"track_id": pa.array(np.asarray(ids, np.int64)[order]), "x": coords[:, 0],
                     "y": coords[:, 1], "z": coords[:, 2]})


class MapSample(KeepBest):
    """``(ids, vectors)`` batches -> the ``sample`` tracks of smallest :func:`~core.neighbours.sample_rank`,
    as ``(ids, vectors)`` sorted by id; no accumulator holds more than ``sample`` tracks plus one batch."""

    empty = (np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
    merge = staticmethod(smallest_by_rank)


def embed_sample(sample: tuple[np.ndarray, np.ndarray], method: str = MAP_METHOD
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The map's sample ``(ids, vectors)`` -> ``(ids, vectors, coordinates)`` by
    :func:`~core.neighbours.sample_layout`."""
    ids, vectors = sample
    Metrics.counter(common.METRICS_NAMESPACE, "map_tracks_layout").inc(len(ids))
    return ids, vectors, sample_layout(vectors, method=method)


def sample_index(sample: tuple[np.ndarray, np.ndarray]) -> bytes | None:
    """The serialised :func:`~core.neighbours.placement_index` of the map's sample (built once, on one worker),
    or None where the sample is searched whole."""
    import faiss

    index = placement_index(sample[1])
    return None if index is None else faiss.serialize_index(index).tobytes()


class NearestSampledFn(beam.DoFn):
    """The tracks of a batch outside the map's sample -> ``(ids, rows of their 5 nearest sampled tracks)``;
    needs only the sample's vectors (and index), so it runs while the sample's layout does."""

    def __init__(self, index_handle: shared.Shared):
        self._index_handle = index_handle

    def setup(self) -> None:
        import faiss

        faiss.omp_set_num_threads(1)  # one worker per core already

    def process(self, batch: tuple[np.ndarray, np.ndarray], sample: tuple[np.ndarray, np.ndarray],
                serialised: bytes | None):
        ids, vectors = batch
        sample_ids, sample_vectors = sample
        outside = ~np.isin(ids, sample_ids)
        if outside.any():
            loaded = self._index_handle.acquire(lambda: SharedIndex(serialised), tag=index_tag(serialised))
            Metrics.counter(common.METRICS_NAMESPACE, "map_tracks_placed").inc(int(outside.sum()))
            yield ids[outside], nearest_rows(vectors[outside], sample_vectors, index=loaded.index)


def place_batch(nearest: tuple[np.ndarray, np.ndarray], sample: tuple[np.ndarray, np.ndarray, np.ndarray]):
    """``(ids, nearest sampled rows)`` -> their map rows, at the mean position of those sampled tracks."""
    ids, rows = nearest
    return map_table(ids, sample[2][rows].mean(axis=1))


class MapCoordinates(beam.PTransform):
    """``(ids, vectors)`` batches -> map tables: a 3-D layout (``method``, :func:`~core.neighbours.sample_layout`)
    of a sample of ``sample`` tracks chosen by a hash of the id (the only step on one worker, bounded by
    ``sample``), every other track placed in parallel, batch by batch, at the mean position of its 5 nearest
    sampled tracks (found while the layout runs); :func:`~core.neighbours.map_coordinates` computes the same in
    one process."""

    def __init__(self, sample: int = MAP_SAMPLE, method: str = MAP_METHOD):
        super().__init__()
        self._sample, self._method = sample, method

    def expand(self, batches):
        sample = batches | "Sample" >> beam.CombineGlobally(MapSample(self._sample))
        embedded = sample | "Layout" >> beam.Map(embed_sample, self._method)
        sampled = embedded | "SampleRows" >> beam.MapTuple(lambda ids, _, coords: map_table(ids, coords))
        index = sample | "SampleIndex" >> beam.Map(sample_index)
        placed = (batches | "Nearest" >> beam.ParDo(NearestSampledFn(shared.Shared()), beam.pvalue.AsSingleton(sample),
                                                     beam.pvalue.AsSingleton(index))
                  | "Place" >> beam.Map(place_batch, beam.pvalue.AsSingleton(embedded)))
        return (sampled, placed) | "MapRows" >> beam.Flatten()


def placed_rows(new_track: int, nearest: tuple[np.ndarray, np.ndarray], old_coords: dict[int, tuple] | None = None):
    """Map coordinates of a new track: the mean position of its nearest old tracks."""
    x, y, z = np.mean([old_coords[int(n)] for n in nearest[0]], axis=0)
    return new_track, (float(x), float(y), float(z))


def coords_of(table, wanted: list[int]):
    """The ``(track_id, (x, y, z))`` of the map rows of ``table`` whose track is in ``wanted``."""
    import pyarrow as pa

    kept = table.filter(pa.array(np.isin(table["track_id"].to_numpy(), np.asarray(wanted, np.int64))))
    for row in kept.to_pylist():
        yield row["track_id"], (row["x"], row["y"], row["z"])


class PlaceNewTracks(beam.PTransform):
    """``(new, old, old_map)`` -> map tables of the new tracks, each at the mean position of its
    :data:`~core.neighbours.MAP_NEIGHBOURS` nearest old tracks (the layout is not run again). ``new`` and ``old``
    are ``(ids, vectors)`` batches, ``old_map`` the old tracks' ``map3d.parquet`` tables."""

    def expand(self, inputs):
        new, old, old_map = inputs
        new_matrix = new_track_matrix(new)
        nearest = (old | "NewAmongOld" >> beam.FlatMap(new_among_old, new_matrix, MAP_NEIGHBOURS)
                   | "NearestOld" >> beam.CombinePerKey(MergeTopK(MAP_NEIGHBOURS)))
        wanted = beam.pvalue.AsSingleton(nearest | "WantedIds" >> beam.FlatMap(lambda pair: pair[1][0].tolist())
                                         | "Wanted" >> beam.combiners.ToList())
        old_coords = beam.pvalue.AsDict(old_map | "WantedCoords" >> beam.FlatMap(coords_of, wanted))
        return (nearest | "Place" >> beam.MapTuple(placed_rows, old_coords)
                | "PlacedBatches" >> beam.BatchElements(min_batch_size=256, max_batch_size=VECTOR_BATCH)
                | "PlacedTable" >> beam.Map(lambda rows: map_table(np.array([t for t, _ in rows], np.int64),
                                                                   np.array([c for _, c in rows], np.float32))))


class ExtendMap(beam.PTransform):
    """``(new, old, old_map)`` -> the map: ``old_map``'s tables as they are, and each new track beside its nearest
    old ones (:class:`PlaceNewTracks`)."""

    def expand(self, inputs):
        _, _, old_map = inputs
        placed = inputs | "PlaceNew" >> PlaceNewTracks()
        return (old_map, placed) | "AllMap" >> beam.Flatten()
