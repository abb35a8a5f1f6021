"""Test helpers: read an ingest output's tiles back without TensorFlow; write neighbour blocks as one Parquet file."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from schemas.audio import AudioSpec
from schemas.tile_example import TILE_COMPRESSION, TILE_FILE_SUFFIX, TILES_FOLDER, decode_tile


def tfrecord_payloads(path: Path) -> list[bytes]:
    """The records of one tile TFRecord file (length, CRC, payload, CRC; CRCs not checked), compressed as
    ``schemas.tile_example.TILE_COMPRESSION`` says."""
    data = path.read_bytes()
    assert (data[:2] == b"\x1f\x8b") == (TILE_COMPRESSION == "gzip"), f"{path}: not {TILE_COMPRESSION}"
    if TILE_COMPRESSION == "gzip":
        data = gzip.decompress(data)
    records, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        records.append(data[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
    return records


def tiles_by_split(data: Path, spec: AudioSpec) -> dict[str, list[tuple[int, int, bytes]]]:
    """``{split: sorted [(track_id, tile_index, float16 mel bytes)]}`` of every tile under ``data/tiles``."""
    found: dict[str, list[tuple[int, int, bytes]]] = {}
    for shard in sorted((data / TILES_FOLDER).glob(f"*{TILE_FILE_SUFFIX}")):
        split = shard.name.split("-")[0]
        for record in tfrecord_payloads(shard):
            tile = decode_tile(record, spec)
            found.setdefault(split, []).append((tile.track_id, tile.tile_index, tile.mel.astype("float16").tobytes()))
    return {split: sorted(tiles) for split, tiles in found.items()}


def write_neighbour_table(blocks: list, path: str, schema) -> int:
    """Write neighbour blocks (:data:`beam_jobs.embed.batches.NeighbourBlock`, padded rows of any width) as one
    Parquet file through the jobs' :func:`~beam_jobs.embed.tail.neighbour_tables`, sorted by (track_id, rank), with
    row groups of ``TRACKS_PER_ROW_GROUP`` tracks and page checksums; returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_jobs.embed.tail import TRACKS_PER_ROW_GROUP, neighbour_tables

    width = max((b[1].shape[1] for b in blocks), default=0)

    def padded(array: np.ndarray, fill) -> np.ndarray:
        return np.pad(array, ((0, 0), (0, width - array.shape[1])), constant_values=fill)

    block = (np.concatenate([b[0] for b in blocks]) if blocks else np.zeros(0, np.int64),
             np.concatenate([padded(b[1], -1) for b in blocks]) if blocks else np.zeros((0, 0), np.int64),
             np.concatenate([padded(b[2], -np.inf) for b in blocks]) if blocks else np.zeros((0, 0), np.float32))
    parts = [t.cast(schema) for t in neighbour_tables(block, TRACKS_PER_ROW_GROUP)]
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    pq.write_table(table, path, row_group_size=max(1, TRACKS_PER_ROW_GROUP * max(1, width)), write_page_checksum=True)
    return table.num_rows
