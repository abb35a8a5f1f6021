"""What the model takes, read from an ingest output: every log-mel tile in tile order (each shard's records
checked, their count compared with the catalogue's), or each track's summary features."""
from __future__ import annotations

import posixpath
from typing import Iterator

import apache_beam as beam
import numpy as np

from beam_jobs import common
from schemas import tables
from schemas.audio import AudioSpec
from schemas.layout import DataFiles
from schemas.vector_parts import TILE_INPUT, TRACK_INPUT
from schemas.tile_example import TILE_COMPRESSION_BEAM, TILE_FILE_SUFFIX, TILES_FOLDER, decode_tile
from storage import files


def model_input_count(data: str, takes: str) -> int:
    """How many inputs an embedder that ``takes`` (:data:`schemas.vector_parts.INPUTS`) gets of DATA's accepted
    tracks: their tiles, or one each."""
    tracks = files.read_parquet(files.join(data, DataFiles.TRACKS), ["n_tiles", "status"], made_by="wavelist ingest")
    ok = tracks.column("status").to_numpy(zero_copy_only=False) == "ok"
    if takes == TILE_INPUT:
        return int(tracks.column("n_tiles").to_numpy(zero_copy_only=False)[ok].sum())
    return int(ok.sum())


class ModelInputs(beam.PTransform):
    """A pipeline -> the ``(track_id, (order, array))`` pairs an embedder that ``takes`` (:data:`TILE_INPUT` or
    :data:`TRACK_INPUT`) gets from DATA: every log-mel tile (in tile order), of which there must be ``expected``
    (:func:`model_input_count`), or each track's summary features (order 0)."""

    def __init__(self, data: str, spec: AudioSpec, takes: str, expected: int):
        super().__init__()
        self._data, self._spec, self._takes, self._expected = data, spec, takes, expected

    def expand(self, pipeline):
        return read_model_inputs(pipeline, self._data, self._spec, self._takes, self._expected)


def read_model_inputs(pipeline, data: str, spec: AudioSpec, takes: str, expected: int):
    """:class:`ModelInputs` as a function."""
    if takes == TRACK_INPUT:
        names = tables.summary_feature_names()
        return (
            pipeline
            | "ReadFeatures" >> beam.io.ReadFromParquet(posixpath.join(data, DataFiles.FEATURES))
            | "FeatureVector" >> beam.Map(
                lambda row: (row["track_id"], (0, np.array([row[n] for n in names], np.float32))))
        )
    shards = files.match_files(posixpath.join(data, TILES_FOLDER, f"*{TILE_FILE_SUFFIX}"))
    tiles = (
        pipeline
        | "TileShards" >> beam.Create(shards)
        | "SpreadShards" >> beam.Reshuffle()
        | "ReadTiles" >> beam.FlatMap(read_tile_shard)
        | "DecodeTiles" >> beam.Map(lambda record: decode_tile(record, spec))
    )
    _ = (tiles
         | "CountTiles" >> beam.combiners.Count.Globally()
         | "CheckTileCount" >> beam.Map(check_tile_count, expected, posixpath.join(data, TILES_FOLDER)))
    return tiles | "TrackAndMel" >> beam.Map(lambda tile: (tile.track_id, (tile.tile_index, tile.mel)))


def check_tile_count(found: int, expected: int, folder: str) -> None:
    """Every tile ``tracks.parquet`` counts must have been read: an uncompressed shard cut at a record boundary
    reads as a shorter valid one, so the count is what finds it."""
    if found != expected:
        raise common.InputError(f"{folder} holds {found} tiles where tracks.parquet counts {expected}: a tile shard "
                                "is damaged or missing; rerun wavelist ingest")


def read_tile_shard(path: str) -> Iterator[bytes]:
    """The records of one TFRecord shard, their CRCs checked (:func:`storage.files.read_records`); a truncated or
    damaged shard raises an :class:`~beam_jobs.common.InputError` that names it (Beam's reader would not say which
    file)."""
    records = files.read_records(path, TILE_COMPRESSION_BEAM)
    while True:
        try:
            record = next(records, None)
        except Exception as error:  # EOFError, zlib.error, ValueError (CRC): all mean a damaged file
            reason = f"{type(error).__name__}: {str(error)[:120]}"  # its message may quote the record
            raise common.InputError(f"{path} is a damaged tile shard ({reason}); rerun wavelist ingest") from error
        if record is None:
            return
        yield record
