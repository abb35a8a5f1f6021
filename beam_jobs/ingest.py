"""Beam job 1, ingest: catalogue -> decoded audio -> log-mel tiles (TFRecord) + Parquet tables.

    python -m beam_jobs.ingest --fma-metadata fma_metadata --audio-dir fma_small --out DATA [beam flags]

Writes ``DATA/tiles/{train,validation,test}-SSSSS-of-NNNNN.tfrecord.gz``, ``tracks.parquet``,
``features.parquet``, ``rejects.parquet``, ``audio_spec.json`` and ``summary.json``; the folder appears
only when complete.
"""
from __future__ import annotations

import io
import json
import logging
import math
import posixpath
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from beam_jobs import common
from beam_jobs.catalogue import SPLITS, TrackRow, read_fma_tracks
from schemas import tables
from schemas.audio import AudioSpec, DEFAULT_AUDIO_SPEC
from schemas.tile_example import encode_tile

log = logging.getLogger(__name__)
TRACKS_PER_SHARD = 256
TILES_FOLDER = "tiles"


class IngestOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--fma-metadata", "--fma_metadata", dest="fma_metadata",
                            help="folder holding FMA's tracks.csv (required)")
        parser.add_argument("--audio-dir", "--audio_dir", dest="audio_dir",
                            help="FMA audio folder, e.g. fma_small, local or gs:// (required)")
        parser.add_argument("--subset", default="small", choices=("small", "medium", "large"),
                            help="FMA subset to read (includes the smaller ones)")


def tile_split_key(split: str, num_partitions: int) -> int:
    return SPLITS.index(split)


class AnalyseTrackFn(beam.DoFn):
    """Track row -> (row, Analysis); anything unusable goes to the ``rejects`` output with its stage."""

    REJECTS = "rejects"

    def __init__(self, spec: AudioSpec):
        self._spec = spec
        self._received = Metrics.counter(common.METRICS_NAMESPACE, "ingest_tracks_received")
        self._accepted = Metrics.counter(common.METRICS_NAMESPACE, "ingest_tracks_accepted")
        self._rejected = Metrics.counter(common.METRICS_NAMESPACE, "ingest_tracks_rejected")
        self._tiles = Metrics.counter(common.METRICS_NAMESPACE, "ingest_tiles")
        self._seen = 0

    def process(self, row: TrackRow) -> Iterator[Any]:
        from beam_jobs import audio  # librosa is heavy: import on the worker

        self._received.inc()
        self._seen += 1
        if self._seen % 25 == 0:
            log.info("ingest worker: %d tracks analysed", self._seen)
        path = row["path"]
        try:
            if common.is_remote(path):
                source: Any = io.BytesIO(common.read_bytes(path))
            else:
                if not Path(path).is_file():
                    raise audio.AudioError("read", "file not found")
                source = path
            analysis = audio.analyse(audio.decode(source, self._spec), self._spec)
        except audio.AudioError as error:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(self.REJECTS, reject_row(row, error.stage, error.reason))
            return
        except FileNotFoundError as error:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(self.REJECTS, reject_row(row, "read", str(error)))
            return
        self._accepted.inc()
        self._tiles.inc(len(analysis.tiles))
        yield row, analysis


def reject_row(row: TrackRow, stage: str, reason: str) -> dict[str, Any]:
    return {"track_id": row["track_id"], "path": row["path"], "stage": stage, "reason": reason}


def track_record(row: TrackRow, analysis: Any | None) -> dict[str, Any]:
    """A row of ``tracks.parquet``; ``analysis`` is None for a rejected track."""
    return {
        **{k: row.get(k) for k in ("track_id", "path", "genre", "artist_id", "artist", "title", "split")},
        "duration_s": None if analysis is None else float(analysis.duration_s),
        "n_tiles": None if analysis is None else int(len(analysis.tiles)),
        "status": "rejected" if analysis is None else "ok",
    }


def feature_record(row: TrackRow, analysis: Any) -> dict[str, Any]:
    names = tables.summary_feature_names()
    return {"track_id": row["track_id"], **dict(zip(names, analysis.features.tolist()))}


def tile_records(row: TrackRow, analysis: Any) -> Iterator[tuple[str, bytes]]:
    for index, mel in enumerate(analysis.tiles):
        yield row["split"], encode_tile(track_id=row["track_id"], tile_index=index, mel=mel)


class AnalyseTracks(beam.PTransform):
    """Track rows -> ``ok`` (row, Analysis) and ``rejects`` (reject rows)."""

    def __init__(self, spec: AudioSpec):
        super().__init__()
        self._spec = spec

    def expand(self, rows):
        return rows | "Analyse" >> beam.ParDo(AnalyseTrackFn(self._spec)).with_outputs(
            AnalyseTrackFn.REJECTS, main="ok"
        )


class WriteTiles(beam.PTransform):
    """(row, Analysis) -> GZIP TFRecord shards of tile Examples, one set of shards per split."""

    def __init__(self, folder: str, shards: dict[str, int]):
        super().__init__()
        self._folder = folder
        self._shards = shards

    def expand(self, analysed):
        by_split = (
            analysed
            | "ToExamples" >> beam.FlatMapTuple(tile_records)
            | "BySplit" >> beam.Partition(lambda kv, n: SPLITS.index(kv[0]), len(SPLITS))
        )
        for split, tiles in zip(SPLITS, by_split):
            _ = (
                tiles
                | f"Bytes[{split}]" >> beam.Values()
                | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                    posixpath.join(self._folder, split),
                    file_name_suffix=".tfrecord.gz",
                    compression_type=CompressionTypes.GZIP,
                    num_shards=self._shards[split],
                )
            )
        return analysed.pipeline


def write_table(pcoll, folder: str, name: str, schema, label: str):
    return pcoll | label >> beam.io.WriteToParquet(
        posixpath.join(folder, name), schema, num_shards=1, shard_name_template=""
    )


def shard_counts(rows: Iterable[TrackRow]) -> dict[str, int]:
    per_split = Counter(row["split"] for row in rows)
    return {split: max(1, math.ceil(per_split[split] / TRACKS_PER_SHARD)) for split in SPLITS}


def build_pipeline(pipeline: beam.Pipeline, rows: list[TrackRow], staging: str, spec: AudioSpec) -> None:
    catalogue = pipeline | "Catalogue" >> beam.Create(rows, reshuffle=True)
    analysed = catalogue | "AnalyseTracks" >> AnalyseTracks(spec)
    ok, rejects = analysed.ok, analysed[AnalyseTrackFn.REJECTS]
    _ = ok | "WriteTiles" >> WriteTiles(posixpath.join(staging, TILES_FOLDER), shard_counts(rows))

    by_id = {row["track_id"]: row for row in rows}
    track_rows = (
        (ok | "OkTracks" >> beam.MapTuple(track_record)),
        (rejects | "RejectedTracks" >> beam.Map(lambda r: track_record(by_id[r["track_id"]], None))),
    ) | "AllTracks" >> beam.Flatten()
    write_table(track_rows, staging, "tracks.parquet", tables.TRACKS, "WriteTracks")
    write_table(ok | "Features" >> beam.MapTuple(feature_record), staging, "features.parquet",
                tables.FEATURES, "WriteFeatures")
    write_table(rejects, staging, "rejects.parquet", tables.REJECTS, "WriteRejects")


def summarise(folder: str) -> dict[str, Any]:
    """Counts read back from the written tables: inputs = accepted + rejected, per split and genre."""
    tracks = pq.read_table(Path(folder) / "tracks.parquet").to_pylist()
    rejects = pq.read_table(Path(folder) / "rejects.parquet").to_pylist()
    ok = [t for t in tracks if t["status"] == "ok"]
    return {
        "inputs": len(tracks),
        "accepted": len(ok),
        "rejected": len(rejects),
        "tiles": int(sum(t["n_tiles"] for t in ok)),
        "accepted_per_split": dict(sorted(Counter(t["split"] for t in ok).items())),
        "accepted_per_genre": dict(sorted(Counter(t["genre"] or "" for t in ok).items())),
        "rejected_per_stage": dict(sorted(Counter(r["stage"] for r in rejects).items())),
    }


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None,
        spec: AudioSpec = DEFAULT_AUDIO_SPEC) -> dict[str, Any]:
    """Run the ingest job; returns the summary it also writes to ``OUT/summary.json``."""
    options = PipelineOptions(argv)
    args = options.view_as(IngestOptions)
    common.require_flags(options, "fma_metadata", "audio_dir", "out")
    output = options.view_as(common.OutputOptions)
    options.view_as(SetupOptions).save_main_session = False
    common.check_output(output.out, overwrite=output.overwrite)
    tracks_csv = posixpath.join(args.fma_metadata, "tracks.csv")
    with common.open_text(tracks_csv) as handle:
        rows = read_fma_tracks(handle, audio_dir=args.audio_dir, subset=args.subset, source=tracks_csv)
    if not rows:
        raise ValueError(f"{tracks_csv} lists no track of subset {args.subset!r}")
    log.info("ingest: %d tracks from %s", len(rows), tracks_csv)

    with common.staged_output(output.out, overwrite=output.overwrite) as staging:
        pipeline = test_pipeline or common.make_pipeline(options)
        build_pipeline(pipeline, rows, staging, spec)
        pipeline.run().wait_until_finish()
        spec.save(staging)
        summary = summarise(staging)
        (Path(staging) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("ingest: %d accepted, %d rejected, %d tiles -> %s",
             summary["accepted"], summary["rejected"], summary["tiles"], output.out)
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run()
