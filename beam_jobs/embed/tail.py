"""The tail: vectors -> the tables of an embed output (embeddings, neighbours, map, tracks), composed from the
stages: embed and ``wavelist update`` run :class:`EmbedTail`, ``wavelist add`` :class:`AddTail`."""
from __future__ import annotations

import json
import posixpath
from typing import Any

import apache_beam as beam
import numpy as np

from beam_jobs import common
from beam_jobs.embed.batches import VECTOR_BATCH, NeighbourBlock, ReadTable, ReadVectors, StackVectors, embedding_table
from beam_jobs.embed.diffusion import Diffuse, DiffuseNew
from beam_jobs.embed.exact_neighbours import BlockNeighbours, ExtendNeighbours
from beam_jobs.embed.index import DIFFUSION_INDEX_FILE, INDEX_FILE, IndexNeighbours
from beam_jobs.embed.map3d import ExtendMap, MapCoordinates
from beam_jobs.embed.tracks import EmbeddedTracks, ExtendTracks
from core.neighbours import DIFFUSION_NEIGHBOURS, DIFFUSION_POWER, MAP_SAMPLE
from schemas import tables
from schemas.layout import TableFiles
from storage import files

NEIGHBOUR_REPORT = TableFiles.NEIGHBOUR_REPORT


TRACKS_PER_ROW_GROUP = 1000


def neighbour_tables(block: NeighbourBlock, tracks_per_table: int = 1000):
    """A :data:`NeighbourBlock` -> rows of ``neighbours.parquet`` sorted by (track_id, rank), in tables of up to
    ``tracks_per_table`` tracks (each becomes a row group); padding (id -1) is dropped."""
    import pyarrow as pa

    track_ids, ids, sims = block
    order = np.argsort(track_ids, kind="stable")
    track_ids, ids, sims = np.asarray(track_ids, np.int64)[order], ids[order], sims[order]
    width = ids.shape[1] if ids.ndim == 2 else 0
    for start in range(0, len(track_ids), tracks_per_table):
        rows = slice(start, start + tracks_per_table)
        found = ids[rows] >= 0  # padding sits at the end of a row, so a found entry's rank is its column + 1
        yield pa.table({
            "track_id": np.repeat(track_ids[rows], found.sum(axis=1)).astype(np.int64),
            "rank": np.broadcast_to(np.arange(1, width + 1, dtype=np.int32), found.shape)[found],
            "neighbour_id": ids[rows][found].astype(np.int64),
            "similarity": sims[rows][found].astype(np.float32),
        })


class WriteVectors(beam.PTransform):
    """``(ids, vectors)`` batches -> the table ``name`` of ``folder`` (``embeddings.parquet``'s schema, the
    ``provenance`` in its metadata)."""

    def __init__(self, folder: str, name: str, provenance: dict[str, Any]):
        super().__init__()
        self._folder, self._name, self._provenance = folder, name, provenance

    def expand(self, batches):
        return (batches | "Tables" >> beam.Map(embedding_table)
                | "Write" >> common.WriteTable(self._folder, self._name,
                                               tables.with_metadata(tables.EMBEDDINGS, **self._provenance)))


class WriteNeighbours(beam.PTransform):
    """:data:`NeighbourBlock` elements -> ``folder/neighbours.parquet`` (the ``provenance`` in its metadata)."""

    def __init__(self, folder: str, provenance: dict[str, Any]):
        super().__init__()
        self._folder, self._provenance = folder, provenance

    def expand(self, blocks):
        return (blocks | "Tables" >> beam.FlatMap(neighbour_tables, TRACKS_PER_ROW_GROUP)
                | "Write" >> common.WriteTable(self._folder, TableFiles.NEIGHBOURS,
                                               tables.with_metadata(tables.NEIGHBOURS, **self._provenance)))


class EmbedTail(beam.PTransform):
    """``(track_id, unit vector)`` -> the tables of an embed output written into ``staging``: embeddings,
    neighbours (exact or approximate), tracks (joined from ``tracks_file``) and the map, each a folder of
    Parquet shards (:class:`~beam_jobs.common.WriteTable`). Every step is parallel except the layout of
    the map's sample (and, in approximate mode, building the index). ``report`` is the neighbour report."""

    def __init__(self, *, staging: str, tracks_file: str, provenance: dict[str, Any], k: int,
                 approximate: bool = False, nprobe: int | None = None, target_recall: float = 0.95,
                 map_sample: int = MAP_SAMPLE, diffusion: int = DIFFUSION_NEIGHBOURS,
                 diffusion_power: float = DIFFUSION_POWER, stacked: bool = False,
                 map_transform: beam.PTransform | None = None):
        super().__init__()
        self._staging, self._tracks_file, self._provenance, self._k = staging, tracks_file, provenance, k
        self._approximate, self._nprobe, self._target_recall = approximate, nprobe, target_recall
        self._map_sample, self._diffusion, self._diffusion_power = map_sample, diffusion, diffusion_power
        self._stacked = stacked  # the input is already ``(ids, vectors)`` batches (wavelist update's stored vectors)
        self._map = map_transform  # final batches -> map tables; default: :class:`MapCoordinates`
        self.report = None

    def _search(self, k: int, file: str = INDEX_FILE) -> beam.PTransform:
        if self._approximate:
            return IndexNeighbours(k, self._nprobe, index_dir=self._staging, target_recall=self._target_recall,
                                   file=file)
        return BlockNeighbours(k)

    def expand(self, vectors):
        staging, provenance = self._staging, self._provenance
        batches = vectors if self._stacked else vectors | "Vectors" >> StackVectors(VECTOR_BATCH)
        if self._diffusion:  # the vectors before it are kept: wavelist add diffuses new tracks against them
            _ = batches | "WriteUndiffused" >> WriteVectors(staging, TableFiles.UNDIFFUSED, provenance)
            batches = batches | "Diffusion" >> Diffuse(self._diffusion_power,
                                                       self._search(self._diffusion, DIFFUSION_INDEX_FILE))
        _ = batches | "WriteEmbeddings" >> WriteVectors(staging, TableFiles.EMBEDDINGS, provenance)
        search = self._search(self._k)
        lists = batches | "Neighbours" >> search
        self.report = getattr(search, "report", None)
        _ = lists | "WriteNeighbours" >> WriteNeighbours(staging, provenance)
        _ = (batches | "Map" >> (self._map or MapCoordinates(self._map_sample))
             | "WriteMap" >> common.WriteTable(staging, TableFiles.MAP3D,
                                               tables.with_metadata(tables.MAP3D, **provenance)))
        _ = (batches | "Tracks" >> EmbeddedTracks(self._tracks_file)
             | "WriteTracks" >> common.WriteTable(staging, TableFiles.TRACKS, tables.TRACKS))
        return batches


class AddTail(beam.PTransform):
    """``(new, old)`` ``(ids, vectors)`` batches (the new tracks' vectors before any diffusion; the final vectors of
    ``old_tables``, an embed output) -> the tables of ``old_tables`` extended by the new tracks, written into
    ``staging``: with ``diffusion`` (the old summary's), the new tracks diffused against the old vectors from before
    it (:class:`~beam_jobs.embed.diffusion.DiffuseNew`, both kept); every neighbour list merged with the new tracks
    (:class:`~beam_jobs.embed.exact_neighbours.ExtendNeighbours`); the map extended
    (:class:`~beam_jobs.embed.map3d.ExtendMap`); the catalogue rows of ``new_tracks_file`` (a DATA
    ``tracks.parquet``) after the old ones (:class:`~beam_jobs.embed.tracks.ExtendTracks`)."""

    def __init__(self, *, staging: str, old_tables: str, new_tracks_file: str, provenance: dict[str, Any], k: int,
                 diffusion: dict[str, Any] | None = None):
        super().__init__()
        self._staging, self._old, self._new_tracks, self._provenance = staging, old_tables, new_tracks_file, provenance
        self._k, self._diffusion = k, diffusion

    def expand(self, new_and_old):
        new, old = new_and_old
        staging, provenance, pipeline = self._staging, self._provenance, old.pipeline
        if self._diffusion:  # new tracks diffused against the old undiffused vectors, which are kept with theirs
            undiffused = pipeline | "ReadUndiffused" >> ReadVectors(files.join(self._old, TableFiles.UNDIFFUSED))
            _ = ((undiffused, new) | "AllUndiffused" >> beam.Flatten()
                 | "WriteUndiffused" >> WriteVectors(staging, TableFiles.UNDIFFUSED, provenance))
            new = (new, undiffused) | "DiffuseNew" >> DiffuseNew(self._diffusion["neighbours"],
                                                                 self._diffusion["power"])
        lists = (new, old) | "Neighbours" >> ExtendNeighbours(self._k, files.join(self._old, TableFiles.NEIGHBOURS))
        _ = lists | "WriteNeighbours" >> WriteNeighbours(staging, provenance)
        _ = ((old, new) | "AllVectors" >> beam.Flatten()
             | "WriteEmbeddings" >> WriteVectors(staging, TableFiles.EMBEDDINGS, provenance))
        old_map = pipeline | "ReadOldMap" >> ReadTable(files.join(self._old, TableFiles.MAP3D))
        _ = ((new, old, old_map) | "Map" >> ExtendMap()
             | "WriteMap" >> common.WriteTable(staging, TableFiles.MAP3D, tables.with_metadata(tables.MAP3D,
                                                                                            **provenance)))
        _ = (pipeline | "Tracks" >> ExtendTracks(files.join(self._old, TableFiles.TRACKS), self._new_tracks)
             | "WriteTracks" >> common.WriteTable(staging, TableFiles.TRACKS, tables.TRACKS))
        return new


def write_tail_report(tail: EmbedTail, staging: str) -> None:
    """Write an approximate :class:`EmbedTail`'s recall report into ``staging`` (read by :func:`finish_tail`)."""
    if tail.report is not None:
        _ = tail.report | "WriteReport" >> beam.Map(
            lambda report: files.write_text(posixpath.join(staging, NEIGHBOUR_REPORT), json.dumps(report)))


def finish_tail(staging: str, approximate: bool) -> dict[str, Any]:
    """After :class:`EmbedTail` ran into ``staging``: its neighbour report (approximate: the recall measured;
    exact: recall 1), with the staged report and index files deleted."""
    report_file = files.join(staging, NEIGHBOUR_REPORT)
    report = files.read_json(report_file) if approximate else {"mode": "exact", "recall@10": 1.0}
    for staged in (report_file, files.join(staging, INDEX_FILE), files.join(staging, DIFFUSION_INDEX_FILE)):
        files.delete_file(staged)
    return report
