"""Beam job ``wavelist add``: add new audio to existing tables without recomputing them.

    wavelist add --audio-dir NEW_AUDIO --tables TABLES --model MODEL --out NEW_TABLES [beam flags]

The new tracks are ingested (into a temporary DATA inside the staging folder) and embedded; their
neighbours are found among old and new tracks, and each old track's list is merged with its best new
tracks. Because a merged top-k of partial lists is the top-k of the whole, the result equals a full
recomputation of embeddings and neighbours. New tracks join the map at the mean position of their 5 nearest
old tracks (the map is not laid out again). The old TABLES stay untouched; NEW_TABLES appears when complete.

Diffused tables (embed's default): each new track is diffused over its nearest among the old and new tracks'
vectors from before the diffusion (``undiffused.parquet``), exactly as a full embed would diffuse it; the old
tracks keep their diffused vectors (a full embed would pull those with a new track among their nearest a little
towards it), so the result equals a full recomputation for the new tracks and every neighbour list.
"""
from __future__ import annotations

import json
import logging
import posixpath
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import common, ingest
from beam_jobs.embed.batches import ReadVectors
from beam_jobs.embed.model_vectors import ModelOptions, TrackVectorBatches
from beam_jobs.embed.tail import AddTail
from beam_jobs.ingest import AudioDirOptions
from schemas import tables
from schemas.audio import AudioSpec
from schemas.errors import UserError
from schemas.layout import SUMMARY, DataFiles, TableFiles
from storage import files

log = logging.getLogger(__name__)


def check_tables(folder: str, model_id: str, spec: AudioSpec) -> tuple[dict[str, Any], set[int]]:
    """The existing tables' summary and track ids; refuses tables of another model or other audio parameters."""
    files.require_complete(folder, made_by="wavelist embed")
    embedded = files.read_parquet(files.join(folder, TableFiles.EMBEDDINGS), ["track_id"], made_by="wavelist embed")
    metadata = tables.read_metadata(embedded.schema)
    if metadata.get("model_id") != model_id:
        raise UserError(f"{folder} holds embeddings of model {metadata.get('model_id')}, not {model_id}; "
                         "add tracks with the model that made the tables, or embed everything anew")
    spec.require_same(AudioSpec.from_dict(metadata["audio_spec"]), what=f"the tables in {folder}")
    summary = files.read_json(files.join(folder, SUMMARY), made_by="wavelist embed")
    return summary, set(embedded["track_id"].to_pylist())


class AddOptions(PipelineOptions):
    """The flag only ``wavelist add`` has; --audio-dir (the new audio), --model and --batch-size are ingest's
    and embed's (Beam parses every options class together, so each flag is declared once)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--tables", help="the TABLES to extend (add) or bring in step with the folder "
                            "(update), an output of wavelist embed (required); --model must be the model that "
                            "made them")


OPTIONS = (AudioDirOptions, AddOptions, ModelOptions)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict[str, Any]:
    """Run the add job; returns the summary it also writes to ``OUT/summary.json``."""
    options = common.parse_options(argv)
    args = options.view_as(AddOptions)
    audio_dir = options.view_as(AudioDirOptions).audio_dir
    model = options.view_as(ModelOptions)
    common.require_flags(options, "audio_dir", "tables", "model", "out")
    output = options.view_as(common.OutputOptions)
    files.require_complete(model.model, made_by="wavelist train")
    spec = files.load_audio_spec(model.model, made_by="wavelist train")
    info = files.load_model_info(model.model)
    old_summary, old_ids = check_tables(args.tables, info.model_id, spec)
    if old_summary.get("extra_vectors"):
        raise UserError(f"{args.tables} joins extra vectors ({old_summary['extra_vectors']['file']}): wavelist add "
                        "cannot join them to new tracks yet; run wavelist embed --extra-vectors on all the tracks")
    diffusion = old_summary.get("diffusion")
    undiffused = files.join(args.tables, TableFiles.UNDIFFUSED)
    if diffusion and not (files.is_folder(undiffused) or files.exists(undiffused)):
        raise UserError(f"{args.tables} was diffused by a wavelist that did not keep the vectors before the diffusion "
                        f"({TableFiles.UNDIFFUSED}), which new tracks are diffused against; run wavelist embed again")
    k = old_summary["k"]
    provenance = {"model_id": info.model_id, "audio_spec": spec.to_dict()}
    runner_flags = common.runner_flags(options, argv)

    with files.staged_output(output.out, overwrite=output.overwrite, kind="embed",
                              inputs=[args.tables, model.model, audio_dir]) as staging:
        new_data = posixpath.join(staging, "_new_data")
        ingested = ingest.run(["--audio-dir", audio_dir, "--out", new_data, *runner_flags], spec=spec)
        new_tracks = [r for r in files.read_parquet(files.join(new_data, DataFiles.TRACKS)).to_pylist()
                      if r["status"] == "ok"]
        if not new_tracks:
            raise UserError(f"{audio_dir}: none of its {ingested['inputs']} audio files could be added (all "
                             f"rejected: {ingested['rejected_per_stage']}); nothing was added")
        clashes = sorted(old_ids & {r["track_id"] for r in new_tracks})
        if clashes:
            raise UserError(f"{audio_dir}: tracks {clashes[:5]} are already in {args.tables}; nothing was added")
        pipeline = test_pipeline or common.make_pipeline(options, argv)
        old = pipeline | "ReadOld" >> ReadVectors(files.join(args.tables, TableFiles.EMBEDDINGS))
        new = pipeline | "EmbedNew" >> TrackVectorBatches(new_data, files.absolute(model.model), spec, info,
                                                          model.batch_size)
        _ = (new, old) | "Tail" >> AddTail(staging=staging, old_tables=args.tables,
                                           new_tracks_file=files.join(new_data, DataFiles.TRACKS),
                                           provenance=provenance, k=k, diffusion=diffusion)
        common.run_pipeline(pipeline)
        files.remove(new_data)
        summary = {**old_summary, "tracks_added": len(new_tracks), "added_from": audio_dir,
                   "add_rejects": ingested["rejected"],
                   "tracks_embedded": files.parquet_num_rows(files.join(staging, TableFiles.EMBEDDINGS)),
                   "neighbour_rows": files.parquet_num_rows(files.join(staging, TableFiles.NEIGHBOURS))}
        files.write_text(files.join(staging, SUMMARY), json.dumps(summary, indent=2) + "\n")
    log.info("add: %d tracks added -> %s", len(new_tracks), output.out)
    return summary
