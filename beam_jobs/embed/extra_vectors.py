"""Stage 2, extra vectors (``--extra-vectors``): an external embedding checked before the job starts, then
joined to every track's vector as one more part (:class:`JoinExtraVectors`)."""
from __future__ import annotations

import io
from typing import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from beam_jobs import common
from core import vectors as recipe
from schemas import tables
from schemas.errors import UserError
from storage import files


def check_extra_vectors(path: str, catalogue: np.ndarray) -> tuple[str, int]:
    """The vector column of an ``--extra-vectors`` file and its vectors' length, after every row was checked here,
    in the launching process, before any pipeline starts (a batch at a time: bounded memory): integer track ids,
    vectors of one length, finite and not all zero, one for each track of ``catalogue`` (the accepted track ids
    of DATA). Anything else is a one-line :class:`UserError` naming the file, and the row and track."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shards = files.table_files(path)
    if not shards:
        raise UserError(f"--extra-vectors {path}: no such Parquet file or folder")
    column, dim, seen = None, None, []
    for shard in shards:
        try:
            reader = pq.ParquetFile(io.BytesIO(files.read_bytes(shard)) if files.is_remote(shard) else shard)
            schema = reader.schema_arrow
        except (pa.ArrowException, OSError) as error:
            raise UserError(f"--extra-vectors {shard}: not a readable Parquet file ({error})") from None
        names = schema.names
        column = next((c for c in tables.EXTRA_VECTOR_COLUMNS if c in names), None)
        if "track_id" not in names or column is None:
            raise UserError(f"--extra-vectors {shard}: needs the columns track_id and one of "
                            f"{' or '.join(tables.EXTRA_VECTOR_COLUMNS)}; it has {names[:20]}")
        vector_type = schema.field(column).type
        if not pa.types.is_integer(schema.field("track_id").type) or not (
                pa.types.is_list(vector_type) or pa.types.is_large_list(vector_type)
                or pa.types.is_fixed_size_list(vector_type)) or not (
                pa.types.is_floating(vector_type.value_type) or pa.types.is_integer(vector_type.value_type)):
            raise UserError(f"--extra-vectors {shard}: track_id must be integers and {column} lists of numbers; they "
                            f"are {schema.field('track_id').type} and {vector_type}")
        row = 0
        try:
            for batch in reader.iter_batches(batch_size=8192, columns=["track_id", column]):
                ids, vectors = batch.column(0), batch.column(1)
                lengths = pc.fill_null(pc.list_value_length(vectors), -1).to_numpy()
                dim = dim if dim is not None else max(int(lengths[0]), 1)  # the first vector's length
                good = (lengths == dim) & ~ids.is_null().to_numpy(zero_copy_only=False)
                if good.all():
                    values = pc.list_flatten(vectors).to_numpy(zero_copy_only=False).astype(np.float64)
                    values = values.reshape(-1, dim)
                    good = np.isfinite(values).all(axis=1) & values.any(axis=1)
                if not good.all():
                    at = int(np.argmin(good))
                    raise UserError(f"--extra-vectors {shard} row {row + at + 1} (track {ids[at].as_py()}): the "
                                    f"vector is not {dim} finite numbers, not all zero")
                seen.append(ids.to_numpy())
                row += len(batch)
        except (pa.ArrowException, OSError) as error:
            raise UserError(f"--extra-vectors {shard}: not a readable Parquet file ({error})") from None
    if dim is None:
        raise UserError(f"--extra-vectors {path}: holds no rows")
    given = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    ids, counts = np.unique(given[np.isin(given, catalogue)], return_counts=True)
    if (counts > 1).any():
        raise UserError(f"--extra-vectors {path}: {counts.max()} vectors for track {ids[np.argmax(counts)]}; every "
                        "track of the catalogue needs exactly one")
    missing = np.setdiff1d(catalogue, ids)
    if len(missing):
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"--extra-vectors {path}: 0 vectors for track {missing[0]}{more}; every track of the "
                        "catalogue needs exactly one")
    return column, dim


def extra_rows(table, path: str, column: str, dim: int) -> Iterator[tuple[int, np.ndarray]]:
    """Rows of an ``--extra-vectors`` batch -> ``(track_id, vector)``; a vector of another length, a
    non-finite or zero one stops the job with the file and the track named."""
    ids = table.column("track_id").to_numpy()
    for track_id, vector in zip(ids.tolist(), table.column(column).to_pylist()):
        vector = np.asarray(vector, np.float32)
        if vector.shape != (dim,) or not np.isfinite(vector).all() or not vector.any():
            raise common.InputError(f"--extra-vectors {path}: the vector of track {track_id} is not {dim} finite "
                                    f"numbers, not all zero")
        yield track_id, vector


def join_extra_vector(grouped: tuple[int, dict[str, list[np.ndarray]]], path: str, weight: float):
    """One track's ``(track_id, {"model": [vector], "extra": [vector]})`` -> the joined vector (:func:`core.vectors.join_extra`).
    Extra vectors of tracks outside the catalogue are counted and ignored; a track without one (or with two)
    stops the job: every vector of a table must have the same parts."""
    track_id, parts = grouped
    if not parts["model"]:
        Metrics.counter(common.METRICS_NAMESPACE, "extra_vectors_unused").inc()
        return
    if len(parts["extra"]) != 1:
        raise common.InputError(f"--extra-vectors {path}: {len(parts['extra'])} vectors for track {track_id}; "
                                "every track of the catalogue needs exactly one")
    yield track_id, recipe.join_extra(parts["model"][0], parts["extra"][0], weight)


class JoinExtraVectors(beam.PTransform):
    """``(track_id, unit vector)`` -> the same tracks' vectors joined with an external embedding read from
    ``path`` inside the pipeline (a join by track id, never a table on one worker)."""

    def __init__(self, path: str, column: str, dim: int, weight: float):
        super().__init__()
        self._path, self._column, self._dim, self._weight = path, column, dim, weight

    def expand(self, vectors):
        extra = (vectors.pipeline
                 | "ReadExtra" >> beam.io.ReadFromParquetBatched(common.table_pattern(self._path),
                                                                 columns=["track_id", self._column])
                 | "ExtraRows" >> beam.FlatMap(extra_rows, self._path, self._column, self._dim))
        return ({"model": vectors, "extra": extra} | "ByTrack" >> beam.CoGroupByKey()
                | "Join" >> beam.FlatMap(join_extra_vector, self._path, self._weight))
