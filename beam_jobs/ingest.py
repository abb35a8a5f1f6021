"""Beam job 1, ingest: catalogue -> decoded audio -> log-mel tiles (TFRecord) + Parquet tables.

    wavelist ingest --fma-metadata fma_metadata --audio-dir fma_small --out DATA [beam flags]
    wavelist ingest --audio-dir MUSIC [--labels-csv labels.csv] --out DATA
    wavelist ingest --audio-glob 'gs://bucket/music/*.flac' --out DATA

Writes ``DATA/tiles/{train,validation,test}-SSSSS-of-NNNNN.tfrecord.gz``, ``tracks.parquet``,
``features.parquet``, ``rejects.parquet``, ``audio_spec.json`` and ``summary.json``; the folder appears
only when complete.
"""
from __future__ import annotations

import io
import json
import logging
import os
import posixpath
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions  # dry runs

from beam_jobs import common
from core import catalogue as cat
from core.catalogue import TrackRow
from schemas import tables
from schemas.audio import AudioSpec, DEFAULT_AUDIO_SPEC
from schemas.errors import UserError
from schemas.layout import SPLITS, SUMMARY, DataFiles
from schemas.tile_example import TILE_COMPRESSION_BEAM, TILE_FILE_SUFFIX, TILES_FOLDER, encode_tile
from storage import files, text_files

log = logging.getLogger(__name__)
CATALOGUE_FILE = DataFiles.CATALOGUE


class IngestOptions(PipelineOptions):
    """The flags of ``wavelist ingest``."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--fma-metadata", "--fma_metadata", dest="fma_metadata",
                            help="FMA source: the folder holding tracks.csv (with --audio-dir)")
        parser.add_argument("--audio-glob", "--audio_glob", dest="audio_glob",
                            help="folder source given as a glob, e.g. 'music/**' or 'gs://b/x/*.flac'")
        parser.add_argument("--labels-csv", "--labels_csv", dest="labels_csv",
                            help="folder source: CSV with a path column and optional track_id, genre, "
                            "artist_id, artist, title (--labels is Beam's flag for Dataflow job labels)")
        parser.add_argument("--subset", default="small", choices=cat.FMA_SUBSETS,
                            help="FMA subset to read (includes the smaller ones)")
        parser.add_argument("--excerpts", type=int, default=None,
                            help=f"analysis budget: a track longer than the budget is analysed from this many "
                            f"excerpts spread over it, only those decoded (default {DEFAULT_AUDIO_SPEC.excerpts}; "
                            f"0: every tile of every track)")
        parser.add_argument("--excerpt-tiles", "--excerpt_tiles", dest="excerpt_tiles", type=int, default=None,
                            help=f"tiles of {DEFAULT_AUDIO_SPEC.tile_seconds:.2f} s per excerpt (default "
                            f"{DEFAULT_AUDIO_SPEC.excerpt_tiles})")


class AudioDirOptions(PipelineOptions):
    """``--audio-dir``, the one flag ingest and add share (Beam parses every options class together, so a
    flag is declared once)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--audio-dir", "--audio_dir", dest="audio_dir",
                            help="audio folder, local or gs://, taken literally: FMA's fma_small etc., or any "
                            "folder of audio (wavelist add: the new audio; wavelist update: the library as it is now)")


OPTIONS = (AudioDirOptions, IngestOptions)


def read_catalogue(args: IngestOptions, audio_dir: str | None
                   ) -> tuple[list[TrackRow], list[dict[str, Any]], str]:
    """Rows of the catalogue the flags name, rejects found before any audio is read (duplicate ids and
    files, labels outside the folder, broken links), and a description. A folder's files are read once here,
    for the identity of their audio, which gives their track ids (:func:`identified`)."""
    rejects: list[dict[str, Any]] = []
    if args.fma_metadata:
        if not audio_dir:
            raise UserError("--fma-metadata needs --audio-dir, the folder of FMA's audio (e.g. fma_small)")
        tracks_csv = posixpath.join(args.fma_metadata, cat.FMA_TRACKS_CSV)
        with files.open_text(tracks_csv) as handle:
            rows = cat.read_fma_tracks(handle, audio_dir=audio_dir, subset=args.subset, source=tracks_csv)
        require_fma_audio(rows, audio_dir, tracks_csv)
        source = f"{tracks_csv} (subset {args.subset})"
    elif audio_dir or args.audio_glob:
        rows, rejects, source = folder_catalogue(audio_dir, args.audio_glob, args.labels_csv)
        rows = cat.assign_ids(identified(with_file_stats(rows)))
    else:
        raise UserError("give a catalogue: --fma-metadata DIR --audio-dir DIR, or --audio-dir DIR, or --audio-glob GLOB")
    if not rows and not rejects:
        raise UserError(f"{source} holds no audio track to ingest")
    rows, duplicates = cat.drop_duplicate_ids(rows)
    return rows, rejects + duplicates, source


def folder_catalogue(audio_dir: str | None, audio_glob: str | None, labels_csv: str | None
                     ) -> tuple[list[TrackRow], list[dict[str, Any]], str]:
    """The rows of a folder's (or a glob's) audio files, labelled from ``labels_csv``, before their ids
    (:func:`core.catalogue.folder_tracks`), the rejects found without reading audio, and the source's name."""
    rejects: list[dict[str, Any]] = []
    root = (audio_dir or cat.glob_root(audio_glob)).rstrip("/")
    if audio_dir and not files.is_remote(root):
        if not Path(root).is_dir():
            raise FileNotFoundError(f"--audio-dir {root} is not a folder")
        paths, rejects = cat.walk_audio_folder(root)
    else:  # a folder is taken literally: only --audio-glob is a pattern
        pattern = audio_glob or posixpath.join(cat.escape_glob(root), "**")
        paths = files.match_files(pattern)
    labels = None
    if labels_csv:
        with text_files.open_text(labels_csv) as handle:
            labels = cat.read_labels(handle, source=labels_csv)
    rows, found_rejects = cat.folder_tracks(paths, root=root, labels=labels, keep_unmatched_labels=not audio_glob)
    return rows, rejects + found_rejects, audio_glob or root


IDENTIFY_THREADS = 8  # files read at once for their identity: the reads wait on the disk or the network


def _stat(row: TrackRow) -> dict[str, Any]:
    path = cat.readable_path(row)
    try:
        size, mtime_ns = files.file_stat(path)
    except (OSError, IndexError):  # missing (a labels row naming no file), unreadable: ingest rejects it
        return {**row, "file_size": None, "file_mtime_ns": None}
    return {**row, "file_size": size, "file_mtime_ns": mtime_ns, "real_path": cat.real_path(path)}


def _identify(row: TrackRow) -> TrackRow:
    from core.identity import audio_identity

    try:
        with files.open_binary(cat.readable_path(row)) as handle:
            return {**row, "audio_identity": audio_identity(handle)}
    except OSError:  # ingest's worker says why when it reads the file
        return {**row, "audio_identity": None}


def _threaded(function, rows: list[TrackRow]) -> list[TrackRow]:
    from concurrent.futures import ThreadPoolExecutor

    if files.is_remote(rows[0]["path"] if rows else "") or len(rows) > 64:
        with ThreadPoolExecutor(IDENTIFY_THREADS) as pool:
            return list(pool.map(function, rows))
    return [function(row) for row in rows]


def with_file_stats(rows: list[TrackRow]) -> list[TrackRow]:
    """``rows`` with each file's ``file_size``, ``file_mtime_ns`` (None where the file cannot be found) and
    ``real_path`` (:func:`core.catalogue.real_path`: where a link leads)."""
    if rows and not files.is_remote(rows[0]["path"]):
        return [_stat(row) for row in rows]  # a local stat is too quick to share out
    return _threaded(_stat, rows)


def identified(rows: list[TrackRow]) -> list[TrackRow]:
    """``rows`` with the ``audio_identity`` of each file (:func:`core.identity.audio_identity`), read by
    :data:`IDENTIFY_THREADS` threads; None where the file cannot be read."""
    start = time.monotonic()
    found = _threaded(_identify, rows)
    if rows:
        log.info("ingest: identified the audio of %d files in %.1f s", len(rows), time.monotonic() - start)
    return found


def require_fma_audio(rows: list[TrackRow], audio_dir: str, tracks_csv: str) -> None:
    """Refuse an FMA ingest whose audio folder holds none of the files ``tracks.csv`` lists (a mistyped
    ``--audio-dir``); log how many it holds."""
    if files.is_remote(audio_dir):
        prefix = audio_dir.rstrip("/") + "/"
        present = set(files.match_files(cat.escape_glob(prefix) + "**"))
    else:
        if not Path(audio_dir).is_dir():
            raise FileNotFoundError(f"--audio-dir {audio_dir} is not a folder")
        present = {os.path.normpath(os.path.join(folder, name))
                   for folder, _, names in os.walk(audio_dir) for name in names}
    found = sum((row["path"] if files.is_remote(audio_dir) else os.path.normpath(row["path"])) in present
                for row in rows)
    if rows and not found:
        raise FileNotFoundError(f"--audio-dir {audio_dir} holds none of the {len(rows)} audio files {tracks_csv} "
                                f"lists (e.g. {rows[0]['path']}); is it the FMA audio folder (fma_small ...)?")
    log.info("ingest: %d of the %d files %s lists are in %s", found, len(rows), tracks_csv, audio_dir)


class AnalyseTrackFn(beam.DoFn):
    """Track row -> (row, Analysis); an unusable track goes to ``rejects`` as (row, stage, reason)."""

    REJECTS = "rejects"

    def __init__(self, spec: AudioSpec, total: int | None = None, workers: int | None = None):
        self._spec = spec
        # what one worker expects to analyse: the job's tracks shared among the local workers (unknown on a
        # remote runner, which sizes itself: then only counts and pace)
        self._share = -(-total // workers) if total and workers else None
        self._received = Metrics.counter(common.METRICS_NAMESPACE, "ingest_tracks_received")
        self._accepted = Metrics.counter(common.METRICS_NAMESPACE, "ingest_tracks_accepted")
        self._rejected = Metrics.counter(common.METRICS_NAMESPACE, "ingest_tracks_rejected")
        self._tiles = Metrics.counter(common.METRICS_NAMESPACE, "ingest_tiles")

    def setup(self) -> None:
        from threadpoolctl import threadpool_limits

        from core.progress import Progress

        # One BLAS thread per worker: the runner already runs one worker per core, and letting each
        # worker's OpenBLAS spawn a thread per core halved the job's throughput on 2 cores.
        self._blas_threads = threadpool_limits(limits=1)
        self._progress_report = Progress(f"ingest worker {os.getpid()} analysed", self._share)

    def _progress(self) -> None:
        line = self._progress_report.add()
        if line:
            print(line, file=sys.stderr, flush=True)

    def process(self, row: TrackRow) -> Iterator[Any]:
        from core import audio  # librosa is heavy: import on the worker
        from core.tags import read_tags

        self._received.inc()
        self._progress()
        path = cat.readable_path(row)
        stage = "read"
        try:
            if files.is_remote(path):
                if not files.exists(path):
                    raise audio.AudioError("read", "file not found")
                source: Any = io.BytesIO(files.read_bytes(path))
            elif not Path(path).is_file():
                raise audio.AudioError("read", "file not found")
            else:
                source = path
                row = {**row, "real_path": cat.real_path(path)}  # the file read: a player checks it is still there
            row = cat.with_tags(row, read_tags(source))  # tags are optional: broken ones give {}
            stage = "decode"
            analysis = audio.analyse_source(source, self._spec)
        except audio.AudioError as error:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(self.REJECTS, (row, error.stage, error.reason))
            return
        except OSError as error:  # the system refused the file (a name too long, no permission): said, no traceback
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(self.REJECTS, (row, stage, error.strerror or type(error).__name__))
            return
        except Exception as error:  # any other failure of one file (a vanished object, ...) rejects that file
            self._rejected.inc()
            log.warning("%s: %s failed: %s", row["path"], stage, error, exc_info=True)
            yield beam.pvalue.TaggedOutput(self.REJECTS, (row, stage, f"{type(error).__name__}: {error}"))
            return
        self._accepted.inc()
        self._tiles.inc(len(analysis.tiles))
        yield row, analysis


def reject_record(row: TrackRow, stage: str, reason: str) -> dict[str, Any]:
    return {"track_id": row["track_id"], "path": row["path"], "stage": stage, "reason": reason}


def track_record(row: TrackRow, analysis: Any | None) -> dict[str, Any]:
    """A row of ``tracks.parquet``; ``analysis`` is None for a rejected track."""
    return {
        **{k: row.get(k) for k in tables.TRACKS.names},
        "title": row.get("title") or posixpath.splitext(posixpath.basename(row["path"]))[0],
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
    """Track rows -> ``ok`` (row, Analysis) and ``rejects`` (row, stage, reason)."""

    def __init__(self, spec: AudioSpec, total: int | None = None, workers: int | None = None):
        super().__init__()
        self._spec, self._total, self._workers = spec, total, workers

    def expand(self, rows):
        analyse = AnalyseTrackFn(self._spec, self._total, self._workers)
        return rows | "Analyse" >> beam.ParDo(analyse).with_outputs(
            AnalyseTrackFn.REJECTS, main="ok"
        )


class WriteTiles(beam.PTransform):
    """(row, Analysis) -> TFRecord shards of tile Examples, one set of shards per split.

    The runner chooses the number of shards (one per bundle): a fixed count would send every tile
    through a shuffle, which cost more than the whole audio analysis.
    """

    def __init__(self, folder: str):
        super().__init__()
        self._folder = folder

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
                    file_name_suffix=TILE_FILE_SUFFIX,
                    compression_type=TILE_COMPRESSION_BEAM,
                )
            )
        return analysed.pipeline


def build_pipeline(pipeline: beam.Pipeline, catalogue_file: str, staging: str, spec: AudioSpec,
                   catalogue_rejects: list[dict[str, Any]], total: int | None = None) -> None:
    rows = (
        pipeline
        | "ReadCatalogue" >> beam.io.ReadFromText(catalogue_file)
        | "ParseRows" >> beam.Map(json.loads)
        | "Spread" >> beam.Reshuffle()
    )
    workers = common.local_workers(pipeline)
    analysed = rows | "AnalyseTracks" >> AnalyseTracks(spec, total, workers)
    ok, rejected = analysed.ok, analysed[AnalyseTrackFn.REJECTS]
    _ = ok | "WriteTiles" >> WriteTiles(posixpath.join(staging, TILES_FOLDER))

    track_rows = (
        (ok | "OkTracks" >> beam.MapTuple(track_record)),
        (rejected | "RejectedTracks" >> beam.MapTuple(lambda row, stage, reason: track_record(row, None))),
    ) | "AllTracks" >> beam.Flatten()
    common.write_parquet(track_rows, staging, DataFiles.TRACKS, tables.TRACKS, "WriteTracks")
    common.write_parquet(ok | "Features" >> beam.MapTuple(feature_record), staging, DataFiles.FEATURES,
                tables.FEATURES, "WriteFeatures")
    rejects = (
        (rejected | "RejectRows" >> beam.MapTuple(reject_record)),
        (pipeline | "CatalogueRejects" >> beam.Create(catalogue_rejects)),
    ) | "AllRejects" >> beam.Flatten()
    common.write_parquet(rejects, staging, DataFiles.REJECTS, tables.REJECTS, "WriteRejects")


def summarise(folder: str, inputs: int) -> dict[str, Any]:
    """Counts read back from the written tables; raises if inputs != accepted + rejected."""
    tracks = files.read_parquet(files.join(folder, DataFiles.TRACKS)).to_pylist()
    rejects = files.read_parquet(files.join(folder, DataFiles.REJECTS)).to_pylist()
    ok = [t for t in tracks if t["status"] == "ok"]
    summary = {
        "inputs": inputs,
        "accepted": len(ok),
        "rejected": len(rejects),
        "tiles": int(sum(t["n_tiles"] for t in ok)),
        "accepted_per_split": dict(sorted(Counter(t["split"] for t in ok).items())),
        "accepted_per_genre": dict(sorted(Counter(t["genre"] or "" for t in ok).items())),
        "rejected_per_stage": dict(sorted(Counter(r["stage"] for r in rejects).items())),
    }
    if summary["accepted"] + summary["rejected"] != inputs:
        raise RuntimeError(f"ingest lost tracks: {inputs} in, {summary['accepted']} accepted + "
                           f"{summary['rejected']} rejected; the output was not published")
    return summary


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None,
        spec: AudioSpec = DEFAULT_AUDIO_SPEC) -> dict[str, Any]:
    """Run the ingest job; returns the summary it also writes to ``OUT/summary.json``."""
    options = common.parse_options(argv)
    args = options.view_as(IngestOptions)
    audio_dir = options.view_as(AudioDirOptions).audio_dir
    common.require_flags(options, "out")
    output = options.view_as(common.OutputOptions)
    common.require_remote_paths(options, {"--out": output.out, "--audio-dir": audio_dir,
                                          "--audio-glob": args.audio_glob})
    input_paths = [audio_dir, args.fma_metadata, args.labels_csv,
                   args.audio_glob and cat.glob_root(args.audio_glob)]
    files.check_output(output.out, overwrite=output.overwrite, kind="ingest", inputs=input_paths)
    spec = spec.with_budget(spec.excerpts if args.excerpts is None else args.excerpts,
                            spec.excerpt_tiles if args.excerpt_tiles is None else args.excerpt_tiles)
    rows, duplicates, source = read_catalogue(args, audio_dir)
    return ingest_rows(rows, duplicates, source=source, out=output.out, overwrite=output.overwrite,
                       inputs=input_paths, options=options, argv=argv, test_pipeline=test_pipeline, spec=spec)


def ingest_rows(rows: list[TrackRow], rejects: list[dict[str, Any]], *, source: str, out: str, options: PipelineOptions,
                argv: list[str] | None, overwrite: bool = False, inputs: list[str | None] | None = None,
                test_pipeline: beam.Pipeline | None = None, spec: AudioSpec = DEFAULT_AUDIO_SPEC) -> dict[str, Any]:
    """Analyse catalogue ``rows`` (with their ids) into the DATA folder ``out``; ``rejects`` are those found
    before any audio was read. Returns the summary it also writes to ``OUT/summary.json``."""
    inputs_count = len(rows) + len(rejects)
    log.info("ingest: %d tracks from %s (%d rejected before reading: duplicates, outside, broken links)",
             inputs_count, source, len(rejects))
    try:
        with files.staged_output(out, overwrite=overwrite, kind="ingest", inputs=inputs or []) as staging:
            catalogue_file = files.write_lines(files.join(staging, CATALOGUE_FILE), map(json.dumps, rows))
            pipeline = test_pipeline or common.make_pipeline(options, argv)
            build_pipeline(pipeline, catalogue_file, staging, spec, rejects, total=len(rows))
            result = pipeline.run()
            if options.view_as(TestOptions).dry_run:
                raise common.DryRun()
            result.wait_until_finish()
            files.delete_file(catalogue_file)
            files.save_audio_spec(staging, spec)
            summary = summarise(staging, inputs_count)
            files.write_text(files.join(staging, SUMMARY), json.dumps(summary, indent=2) + "\n")
    except common.DryRun:
        log.info("dry run: the job graph was built and validated; nothing was submitted or written")
        return {"dry_run": True, "inputs": inputs_count}
    log.info("ingest: %d accepted, %d rejected, %d tiles -> %s",
             summary["accepted"], summary["rejected"], summary["tiles"], out)
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run()
