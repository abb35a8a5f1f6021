"""Parquet tables, local or remote (gs://): a table is one file or a folder of shards; reads verify every page
checksum and, when asked, the columns against a schema. Part of :mod:`storage.files`, which callers import."""
from __future__ import annotations

import glob
import io
import os
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.errors import UserError
from storage.paths import _match, _remote, is_remote, read_bytes, write_bytes

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

SHARD_SUFFIX = ".parquet"  # a table folder's shards: part-SSSSS-of-NNNNN.parquet


class UnreadableTable(UserError):
    """A Parquet table that is missing, cannot be read or does not match its schema."""


def table_files(path: str | Path) -> list[str]:
    """The Parquet files of the table at ``path``: the file itself, or the shards of a folder (``*.parquet``
    inside it, as the embed job writes them), sorted; ``[]`` when there is neither."""
    path = str(path)
    if is_remote(path):
        if _remote(path).exists(path):
            return [path]
        return sorted(_match(posixpath.join(path, "*" + SHARD_SUFFIX)))
    if os.path.isfile(path):
        return [path]
    return sorted(glob.glob(os.path.join(glob.escape(path), "*" + SHARD_SUFFIX)))


def _parquet_error(file: str, error: Exception, made_by: str) -> UnreadableTable:
    reason = " ".join(str(error).split())
    return UnreadableTable(f"{file} is not a readable Parquet file ({reason}); rerun {made_by}")


def read_parquet(path: str | Path, columns: list[str] | None = None, *, schema: pa.Schema | None = None,
                 made_by: str = "the job that wrote it") -> pa.Table:
    """The table at ``path`` (a Parquet file or a folder of shards, :func:`table_files`), every page checksum
    verified (flipped bytes are an error, not data) and, with ``schema``, each file's columns checked against
    it. Any problem raises :class:`UnreadableTable` naming the file and ``made_by``, the command to rerun."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.tables import require_columns

    files = table_files(path)
    if not files:
        raise UnreadableTable(f"{path} is missing; rerun {made_by}")
    parts = []
    for file in files:
        try:
            source = file if not is_remote(file) else io.BytesIO(read_bytes(file))
            parts.append(pq.read_table(source, columns=columns, page_checksum_verification=True))
        except (pa.ArrowException, OSError) as error:
            raise _parquet_error(file, error, made_by) from error
        if schema is not None:
            try:
                require_columns(parts[-1].schema, pa.schema([schema.field(c) for c in (columns or schema.names)]),
                                what=file)
            except UserError as error:
                raise UnreadableTable(str(error)) from None
    try:
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    except pa.ArrowInvalid as error:
        raise UnreadableTable(f"the shards of {path} do not share one schema ({error}); rerun {made_by}") from None


def _parquet_footer(file: str, made_by: str) -> pq.FileMetaData:
    """The ``pq.FileMetaData`` of one Parquet file, read from its footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if not is_remote(file):
            return pq.read_metadata(file)
        with _remote(file).open(file, compression_type="uncompressed") as handle:
            return pq.ParquetFile(handle).metadata
    except (pa.ArrowException, OSError) as error:
        raise _parquet_error(file, error, made_by) from error


def parquet_schemas(path: str | Path, *, made_by: str = "the job that wrote it") -> list[tuple[str, pa.Schema]]:
    """``(file, schema)`` of each file of the table at ``path``, from the footers (no data read)."""
    return [(file, _parquet_footer(file, made_by).schema.to_arrow_schema()) for file in table_files(path)]


def parquet_num_rows(path: str | Path, *, made_by: str = "the job that wrote it") -> int:
    """Rows of the table at ``path`` (a file or a folder of shards), from the footers."""
    files = table_files(path)
    if not files:
        raise FileNotFoundError(f"{path} does not exist")
    return sum(_parquet_footer(file, made_by).num_rows for file in files)


def write_parquet(path: str | Path, table: pa.Table, **options: Any) -> str:
    """Write ``table`` as the Parquet file ``path`` (local or remote; a local file's folders are made) with
    ``pyarrow.parquet.write_table``'s ``options``; returns ``path``."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    return write_bytes(path, buffer.getvalue())
