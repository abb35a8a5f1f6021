"""Stage 7, the tracks join: the catalogue rows of the tracks that have a vector, joined by track id in
buckets (:class:`EmbeddedTracks`)."""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from beam_jobs import common
from beam_jobs.embed.batches import TRACKS_PER_BUCKET, ReadTable, count_batches
from core.neighbours import block_of
from schemas import tables


def tracks_by_bucket(table, n_buckets: int):
    """Rows of a DATA ``tracks.parquet`` batch with status ok -> ``(bucket, ("rows", table))`` per bucket of
    :func:`~core.neighbours.block_of` the track id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.filter(pc.equal(table["status"], "ok"))
    buckets = block_of(table["track_id"].to_numpy(), n_buckets)
    for bucket in np.unique(buckets).tolist():
        yield bucket, ("rows", table.filter(pa.array(buckets == bucket)))


def ids_by_bucket(ids: np.ndarray, n_buckets: int):
    """Embedded track ids -> ``(bucket, ("ids", ids))`` per bucket, as :func:`tracks_by_bucket` cuts rows."""
    buckets = block_of(ids, n_buckets)
    for bucket in np.unique(buckets).tolist():
        yield bucket, ("ids", ids[buckets == bucket])


def join_bucket(bucket: int, parts) -> Iterator[Any]:
    """One bucket's catalogue rows and embedded ids -> the rows of the embedded tracks, sorted by id."""
    import pyarrow as pa

    parts = list(parts)
    ids = np.concatenate([p for kind, p in parts if kind == "ids"] or [np.zeros(0, np.int64)])
    rows = [p for kind, p in parts if kind == "rows"]
    if not rows or not len(ids):
        return
    table = pa.concat_tables(rows).sort_by("track_id")
    kept = table.filter(pa.array(np.isin(table["track_id"].to_numpy(), ids)))
    Metrics.counter(common.METRICS_NAMESPACE, "tracks_without_vector").inc(table.num_rows - kept.num_rows)
    if kept.num_rows:
        yield kept


class EmbeddedTracks(beam.PTransform):
    """``(ids, vectors)`` batches -> the catalogue rows (``tracks_file``, status ok) of the tracks that have a
    vector: a hash join by track id in buckets of about ``tracks_per_bucket`` tracks, the catalogue read
    inside the pipeline (never a list in the job graph, never gathered on one worker)."""

    def __init__(self, tracks_file: str, tracks_per_bucket: int = TRACKS_PER_BUCKET):
        super().__init__()
        self._tracks_file, self._tracks_per_bucket = tracks_file, tracks_per_bucket

    def expand(self, batches):
        size = self._tracks_per_bucket
        n_buckets = beam.pvalue.AsSingleton(
            count_batches(batches) | "Buckets" >> beam.Map(lambda n: max(1, -(-n // size))))
        ids = batches | "Ids" >> beam.FlatMap(lambda batch, n: ids_by_bucket(batch[0], n), n_buckets)
        rows = (batches.pipeline
                | "ReadCatalogue" >> beam.io.ReadFromParquetBatched(common.table_pattern(self._tracks_file))
                | "TagColumns" >> beam.Map(tables.with_missing_columns, tables.TRACKS)  # DATA from before tags
                | "RowsByBucket" >> beam.FlatMap(tracks_by_bucket, n_buckets))
        return ((ids, rows) | "Both" >> beam.Flatten() | "ByBucket" >> beam.GroupByKey()
                | "Join" >> beam.FlatMapTuple(join_bucket))


def accepted(table):
    """The rows of a DATA ``tracks.parquet`` batch with status ok."""
    import pyarrow.compute as pc

    return table.filter(pc.equal(table["status"], "ok"))


class ExtendTracks(beam.PTransform):
    """A pipeline -> the catalogue rows of ``old`` (a TABLES ``tracks.parquet``; columns added since are filled)
    and the accepted rows of ``new`` (a DATA ``tracks.parquet``)."""

    def __init__(self, old: str, new: str):
        super().__init__()
        self._old, self._new = old, new

    def expand(self, pipeline):
        new_rows = pipeline | "ReadNewTracks" >> ReadTable(self._new) | "NewOk" >> beam.Map(accepted)
        old_rows = (pipeline | "ReadOldTracks" >> ReadTable(self._old)
                    | "TagColumns" >> beam.Map(tables.with_missing_columns, tables.TRACKS))  # tables before tags
        return (old_rows, new_rows) | "AllTracks" >> beam.Flatten()
