"""Beam job ``wavelist update``: bring TABLES in step with the music folder they were made from, as it is now.

    wavelist update --audio-dir LIB --tables TABLES --model MODEL --out NEW [--labels-csv F] [--new-map] [beam flags]

The folder is compared with TABLES/tracks.parquet by path, size and modification time (nothing else is read
when nothing changed: the command then says so and writes nothing). Files new to a path, or whose size or time
changed, are read for their audio identity (:mod:`core.identity`, no decoding) and sorted into unchanged,
retagged, moved, changed, added and removed tracks (:mod:`core.library`). Added and changed audio is ingested
and embedded as ``wavelist add`` does (:class:`~beam_jobs.embed.TrackVectors`); moved and retagged tracks keep
their id and stored vector with their new path and tags; removed tracks leave every table. Then the tail is
computed anew from the vectors before the diffusion (``undiffused.parquet``, or ``embeddings.parquet`` for
tables without diffusion), with embed's own transforms (:class:`~beam_jobs.embed.EmbedTail`): the diffusion and
the neighbour lists are those of a fresh ``ingest`` + ``embed`` of the folder. The map keeps every kept track's
place and puts new tracks beside their 5 nearest (:class:`~beam_jobs.embed.map3d.ExtendMap`), unless
``--new-map`` asks for a new layout of the map.

``--out`` may name TABLES itself: the new tables are staged beside it and swapped in whole when complete.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import common, ingest
from beam_jobs.add_tracks import AddOptions, check_tables
from beam_jobs.embed.batches import ReadTable, ReadVectors
from beam_jobs.embed.map3d import ExtendMap
from beam_jobs.embed.model_vectors import ModelOptions, TrackVectorBatches
from beam_jobs.embed.tail import EmbedTail, finish_tail, write_tail_report
from beam_jobs.ingest import AudioDirOptions, IngestOptions
from core import catalogue as cat
from core import library
from schemas import tables
from schemas.errors import UserError
from schemas.layout import SUMMARY, DataFiles, TableFiles
from storage import files

log = logging.getLogger(__name__)


class UpdateOptions(PipelineOptions):
    """The flag only ``wavelist update`` has; --audio-dir, --tables, --labels-csv and --model are ingest's, add's
    and embed's (Beam parses every options class together, so each flag is declared once)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--new-map", "--new_map", dest="new_map", action="store_true",
                            help="lay the map out anew (default: kept tracks keep their place, new ones "
                            "join beside their 5 nearest)")


class _LabelsFlag:
    """``--labels-csv`` in ``wavelist update --help`` (the flag itself is ingest's)."""

    @staticmethod
    def _add_argparse_args(parser):
        parser.add_argument("--labels-csv", help="the labels CSV of the folder as it is now (as for ingest)")


OPTIONS = (AudioDirOptions, AddOptions, ModelOptions, UpdateOptions, _LabelsFlag)


def same_folder(one: str, other: str) -> bool:
    """Whether two folder paths name the same folder (local ones after resolving links)."""
    if files.is_remote(one) or files.is_remote(other):
        return one.rstrip("/") == other.rstrip("/")
    return Path(one).resolve() == Path(other).resolve()


def read_row_tags(row: dict[str, Any]) -> dict[str, Any]:
    """The tags of a catalogue row's file (:func:`core.tags.read_tags`), local or remote."""
    from core.tags import read_tags

    path = cat.readable_path(row)
    return read_tags(io.BytesIO(files.read_bytes(path)) if files.is_remote(path) else path)


def write_table_file(table, path: str) -> str:
    """Write the pyarrow ``table`` as the one Parquet file ``path`` (page checksums, as every table)."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, write_page_checksum=True)
    return files.write_bytes(path, buffer.getvalue())


def kept_arrays(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Batches of ``(old ids, new ids)`` of the kept tracks -> both, sorted by old id."""
    old = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    new = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    order = np.argsort(old, kind="stable")
    return old[order], new[order]


def _kept_rows(ids: np.ndarray, kept: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Which of the old ``ids`` are kept, and their new ids."""
    old, new = kept
    at = np.minimum(np.searchsorted(old, ids), max(len(old) - 1, 0))
    hit = old[at] == ids if len(old) else np.zeros(len(ids), bool)
    return hit, new[at[hit]] if len(old) else np.zeros(0, np.int64)


def kept_vectors(batch: tuple[np.ndarray, np.ndarray], kept: tuple[np.ndarray, np.ndarray]):
    """An ``(ids, vectors)`` batch of the old tables -> its kept tracks' ``(new ids, vectors)`` (if any)."""
    ids, vectors = batch
    hit, new_ids = _kept_rows(ids, kept)
    if hit.any():
        yield new_ids, vectors[hit]


def kept_map_rows(table, kept: tuple[np.ndarray, np.ndarray]):
    """A ``map3d.parquet`` batch of the old tables -> its kept tracks' rows under their new ids."""
    hit, new_ids = _kept_rows(table["track_id"].to_numpy(), kept)
    if hit.any():
        table = table.filter(pa.array(hit))
        yield table.set_column(table.schema.get_field_index("track_id"), "track_id", pa.array(new_ids, pa.int64()))


def batch_part(batch: tuple[np.ndarray, np.ndarray], kept: tuple[np.ndarray, np.ndarray], want_kept: bool):
    """The rows of an ``(ids, vectors)`` batch of the new tables whose track was kept (or, else, is new)."""
    ids, vectors = batch
    rows = np.isin(ids, kept[1]) == want_kept
    if rows.any():
        yield ids[rows], vectors[rows]


class KeptMap(beam.PTransform):
    """The final ``(ids, vectors)`` batches -> the map: each kept track where the old map had it (under its new
    id), each new track beside its 5 nearest kept tracks (:class:`~beam_jobs.embed.map3d.ExtendMap`)."""

    def __init__(self, old_map: str, kept, any_new: bool):
        super().__init__()
        self._old_map, self._kept, self._any_new = old_map, kept, any_new

    def expand(self, batches):
        old_map = (batches.pipeline | "ReadOldMap" >> ReadTable(self._old_map)
                   | "KeptRows" >> beam.FlatMap(kept_map_rows, self._kept))
        if not self._any_new:
            return old_map
        new = batches | "NewTracks" >> beam.FlatMap(batch_part, self._kept, False)
        old = batches | "KeptTracks" >> beam.FlatMap(batch_part, self._kept, True)
        return (new, old, old_map) | "Extend" >> ExtendMap()


def labels_digest(labels_csv: str | None) -> str | None:
    return hashlib.sha1(files.read_bytes(labels_csv)).hexdigest() if labels_csv else None


def _reject_rows(plan: library.UpdatePlan, ingest_rejects: list[dict[str, Any]],
                 catalogue_rejects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The library's files that could not be analysed, with their size and time (what the next update compares)."""
    facts = {row["path"]: row for row in plan.analyse}
    found = [{**r, "file_size": facts.get(r["path"], {}).get("file_size"),
              "file_mtime_ns": facts.get(r["path"], {}).get("file_mtime_ns")} for r in ingest_rejects]
    return plan.still_rejected + found + [{**r, "file_size": None, "file_mtime_ns": None} for r in catalogue_rejects]


def counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[k]} {k}" for k in (*library.COUNTS, "rejected") if k in counts)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict[str, Any]:
    """Run the update; returns the summary it also writes to ``OUT/summary.json`` (only ``update`` when nothing
    changed: then nothing is written)."""
    started = time.monotonic()
    options = common.parse_options(argv)
    common.require_flags(options, "audio_dir", "tables", "model", "out")
    library_dir = options.view_as(AudioDirOptions).audio_dir.rstrip("/")
    old_tables = options.view_as(AddOptions).tables
    labels_csv = options.view_as(IngestOptions).labels_csv
    model = options.view_as(ModelOptions)
    output = options.view_as(common.OutputOptions)
    files.require_complete(model.model, made_by="wavelist train")
    spec = files.load_audio_spec(model.model, made_by="wavelist train")
    info = files.load_model_info(model.model)
    old_summary, _ = check_tables(old_tables, info.model_id, spec)
    if old_summary.get("extra_vectors"):
        raise UserError(f"{old_tables} joins extra vectors ({old_summary['extra_vectors']['file']}): wavelist update "
                        "cannot join them to new tracks yet; run wavelist embed --extra-vectors on all the tracks")
    diffusion = old_summary.get("diffusion")
    stored = files.join(old_tables, TableFiles.UNDIFFUSED if diffusion else TableFiles.EMBEDDINGS)
    if not files.table_files(stored):
        raise UserError(f"{old_tables} was diffused by a wavelist that did not keep the vectors before the diffusion "
                        f"({TableFiles.UNDIFFUSED}), which the update starts from; run wavelist embed again")
    in_place = same_folder(output.out, old_tables)
    inputs = [model.model, library_dir, labels_csv, *([] if in_place else [old_tables])]
    overwrite = output.overwrite or in_place  # --out TABLES: the tables are replaced by their update
    files.check_output(output.out, overwrite=overwrite, kind="embed", inputs=inputs)

    rows, catalogue_rejects, _ = ingest.folder_catalogue(library_dir, None, labels_csv)
    if not rows:
        raise UserError(f"{library_dir} holds no audio file: an emptied library is not an update; {old_tables} "
                        "stays as it was")
    rows = ingest.with_file_stats(rows)
    old_rows = tables.with_missing_columns(files.read_parquet(files.join(old_tables, TableFiles.TRACKS),
                                                              made_by="wavelist embed"), tables.TRACKS).to_pylist()
    rejects_table = files.join(old_tables, TableFiles.REJECTS)
    old_rejects = files.read_parquet(rejects_table).to_pylist() if files.table_files(rejects_table) else []
    digest = labels_digest(labels_csv)
    try:
        plan = library.plan_update(old_rows, rows, root=library_dir, identify=ingest.identified, tags_of=read_row_tags,
                                   old_rejects=old_rejects,
                                   reread_tags=digest != (old_summary.get("update") or {}).get("labels_csv_sha1"))
    except library.NotTheLibrary as error:
        raise UserError(f"{error}: it is not the folder {old_tables} was made from; give that folder, or make new "
                        "tables with wavelist ingest and embed") from None
    if plan.nothing_changed:
        print(f"update: nothing changed in {cat.safe_text(library_dir)} since {old_tables} was made "
              f"({plan.counts['unchanged']} tracks, {time.monotonic() - started:.1f} s); nothing written")
        return {"update": {**plan.counts, "nothing_changed": True}}
    planned = time.monotonic()
    log.info("update: %s (%.1f s)", counts_line(plan.counts), planned - started)

    runner_flags = [flag for flag in (argv or []) if flag.startswith("--direct_")]
    with files.staged_output(output.out, overwrite=overwrite, kind="embed", inputs=inputs) as staging:
        work = files.join(staging, TableFiles.UPDATE_STAGING)
        data = files.join(work, "data")
        new_rows: list[dict[str, Any]] = []
        ingest_rejects: list[dict[str, Any]] = []
        if plan.analyse:
            ingest.ingest_rows(plan.analyse, [], source=f"{library_dir} (new and changed audio)", out=data,
                               options=PipelineOptions(runner_flags), argv=runner_flags, spec=spec)
            new_rows = [r for r in files.read_parquet(files.join(data, DataFiles.TRACKS)).to_pylist()
                        if r["status"] == "ok"]
            ingest_rejects = files.read_parquet(files.join(data, DataFiles.REJECTS)).to_pylist()
        analysed_at = time.monotonic()
        final, duplicates = cat.drop_duplicate_ids(plan.kept + new_rows)
        if not final:
            raise UserError(f"{library_dir}: none of its {len(rows)} audio files could be analysed; "
                            f"{old_tables} stays as it was")
        analysed = {id(r) for r in new_rows}
        kept_old = [(plan.old_ids[r["track_id"]], r["track_id"]) for r in final if id(r) not in analysed]
        new_rows = [r for r in final if id(r) in analysed]
        tracks_file = write_table_file(pa.Table.from_pylist(final, schema=tables.TRACKS), files.join(work, "tracks.parquet"))
        kept_file = write_table_file(pa.table({"old_id": pa.array([o for o, _ in kept_old], pa.int64()),
                                               "track_id": pa.array([t for _, t in kept_old], pa.int64())}),
                                     files.join(work, "kept.parquet"))

        pipeline = test_pipeline or common.make_pipeline(options, argv)
        kept = beam.pvalue.AsSingleton(
            pipeline | "ReadKept" >> ReadTable(kept_file)
            | "KeptPairs" >> beam.Map(lambda t: (t["old_id"].to_numpy(), t["track_id"].to_numpy()))
            | "AllKept" >> beam.combiners.ToList() | "KeptArrays" >> beam.Map(kept_arrays))
        batches = (pipeline | "ReadStored" >> ReadVectors(stored)
                   | "KeepStored" >> beam.FlatMap(kept_vectors, kept))
        if new_rows:
            new = pipeline | "EmbedNew" >> TrackVectorBatches(data, files.absolute(model.model), spec, info,
                                                              model.batch_size)
            batches = (batches, new) | "AllVectors" >> beam.Flatten()
        provenance = {"model_id": info.model_id, "audio_spec": spec.to_dict(),
                      **({"diffusion": diffusion} if diffusion else {})}
        approximate = (old_summary.get("neighbours") or {}).get("mode") == "approximate"
        map_transform = None
        if kept_old and not options.view_as(UpdateOptions).new_map:
            map_transform = KeptMap(files.join(old_tables, TableFiles.MAP3D), kept, any_new=bool(new_rows))
        tail = EmbedTail(staging=staging, tracks_file=tracks_file, provenance=provenance, k=old_summary["k"],
                         approximate=approximate,
                         target_recall=(old_summary.get("neighbours") or {}).get("target_recall", 0.95),
                         diffusion=diffusion["neighbours"] if diffusion else 0,
                         diffusion_power=diffusion["power"] if diffusion else 0.0, stacked=True,
                         map_transform=map_transform)
        _ = batches | "Tail" >> tail
        write_tail_report(tail, staging)
        common.run_pipeline(pipeline)
        neighbours = finish_tail(staging, approximate)
        files.remove(work)
        rejected = _reject_rows(plan, ingest_rejects + duplicates, catalogue_rejects)
        write_table_file(pa.Table.from_pylist(rejected, schema=tables.LIBRARY_REJECTS),
                         files.join(staging, TableFiles.REJECTS, f"{common.SHARD_PREFIX}-00000-of-00001.parquet"))
        counts = {**plan.counts, "rejected": len(rejected)}
        summary = {**{k: v for k, v in old_summary.items() if k not in ("tracks_added", "added_from", "add_rejects")},
                   "tracks_in_data": len(final),
                   "tracks_embedded": files.parquet_num_rows(files.join(staging, TableFiles.EMBEDDINGS)),
                   "neighbour_rows": files.parquet_num_rows(files.join(staging, TableFiles.NEIGHBOURS)),
                   "neighbours": neighbours,
                   "update": {**counts, "library": cat.safe_text(library_dir), "labels_csv": labels_csv,
                              "labels_csv_sha1": digest, "first_update": plan.first_update,
                              "map": "laid out anew" if map_transform is None else "kept, new tracks placed",
                              "seconds": round(time.monotonic() - started, 1),
                              "seconds_by_step": {"compare": round(planned - started, 1),
                                                  "ingest": round(analysed_at - planned, 1),
                                                  "embed_and_tail": round(time.monotonic() - analysed_at, 1)}}}
        files.write_text(files.join(staging, SUMMARY), json.dumps(summary, indent=2) + "\n")
    print(f"update: {counts_line(counts)} -> {output.out} ({summary['tracks_embedded']} tracks, "
          f"{summary['update']['seconds']:.0f} s)")
    return summary
