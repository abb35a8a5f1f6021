"""Test helpers: read an ingest output's tiles back without TensorFlow."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

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
