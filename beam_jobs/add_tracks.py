"""Beam job ``wavelist add``: add new audio to existing tables without recomputing them.

    wavelist add --audio-dir NEW_AUDIO --tables TABLES --model MODEL --out NEW_TABLES [beam flags]

The new tracks are ingested (into a temporary DATA inside the staging folder) and embedded; their
neighbours are found among old and new tracks, and each old track's list is merged with its best new
tracks. Because a merged top-k of partial lists is the top-k of the whole, the result equals a full
recomputation of embeddings and neighbours. New tracks join the map at the mean position of their 5 nearest
old tracks (t-SNE is not recomputed). The old TABLES stay untouched; NEW_TABLES appears when complete.
"""
from __future__ import annotations

import json
import logging
import posixpath
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import common, ingest
from beam_jobs.embed import MergeTopK, ModelOptions, TrackVectors, stack_catalogue, write_neighbour_table
from beam_jobs.ingest import AudioDirOptions
from core.neighbours import stack_lists, top_k_cosine
from schemas import tables
from schemas.audio import AudioSpec

log = logging.getLogger(__name__)


def cross_top_k(old_batch: list[tuple[int, np.ndarray]], new: tuple[np.ndarray, np.ndarray], k: int):
    """For a batch of old tracks and all new ones: each old track's top k among the new tracks, and each new
    track's top k among the batch; both as ``(track_id, (ids, similarities))`` partial lists."""
    new_ids, new_vectors = new
    old_ids = np.array([i for i, _ in old_batch], np.int64)
    old_vectors = np.stack([v for _, v in old_batch])
    for side in ((old_vectors, old_ids, new_vectors, new_ids), (new_vectors, new_ids, old_vectors, old_ids)):
        ids, sims = top_k_cosine(*side, k)
        yield from ((int(t), (i, s)) for t, i, s in zip(side[1], ids, sims))


def new_among_new(new: tuple[np.ndarray, np.ndarray], k: int):
    ids, vectors = new
    found, sims = top_k_cosine(vectors, ids, vectors, ids, k)
    yield from ((int(t), (i, s)) for t, i, s in zip(ids, found, sims))


def stored_lists(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    rows = sorted(rows, key=lambda r: r["rank"])
    return (np.array([r["neighbour_id"] for r in rows], np.int64),
            np.array([r["similarity"] for r in rows], np.float32))


def place_new(all_pairs, old_coords: list[dict[str, Any]]):
    """Map rows for every track: old ones where they were, new ones at the mean of their 5 nearest old."""
    placed = {row["track_id"]: (row["x"], row["y"], row["z"]) for row in old_coords}
    ids, vectors = stack_catalogue(all_pairs)
    old = np.array([i in placed for i in ids.tolist()])
    new_rows = np.flatnonzero(~old)
    if len(new_rows):
        nearest, _ = top_k_cosine(vectors[new_rows], ids[new_rows], vectors[old], ids[old], 5)
        for track_id, neighbours in zip(ids[new_rows].tolist(), nearest):
            placed[track_id] = tuple(np.mean([placed[int(n)] for n in neighbours], axis=0))
    for track_id in ids.tolist():
        x, y, z = placed[track_id]
        yield {"track_id": track_id, "x": float(x), "y": float(y), "z": float(z)}


def check_tables(folder: str, model_id: str, spec: AudioSpec) -> tuple[dict[str, Any], set[int]]:
    """The existing tables' summary and track ids; refuses tables of another model or other audio parameters."""
    common.require_complete(folder, made_by="wavelist embed")
    embedded = common.read_parquet(common.join(folder, "embeddings.parquet"), ["track_id"], made_by="wavelist embed")
    metadata = tables.read_metadata(embedded.schema)
    if metadata.get("model_id") != model_id:
        raise ValueError(f"{folder} holds embeddings of model {metadata.get('model_id')}, not {model_id}; "
                         "add tracks with the model that made the tables, or embed everything anew")
    spec.require_same(AudioSpec.from_dict(metadata["audio_spec"]), what=f"the tables in {folder}")
    summary = common.read_json(common.join(folder, "summary.json"), made_by="wavelist embed")
    return summary, set(embedded["track_id"].to_pylist())


class AddOptions(PipelineOptions):
    """The flag only ``wavelist add`` has; --audio-dir (the new audio), --model and --batch-size are ingest's
    and embed's (Beam parses every options class together, so each flag is declared once)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--tables", help="the TABLES to extend, an output of wavelist embed (required); "
                            "--model must be the model that made them")


OPTIONS = (AudioDirOptions, AddOptions, ModelOptions)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict[str, Any]:
    """Run the add job; returns the summary it also writes to ``OUT/summary.json``."""
    options = common.parse_options(argv)
    args = options.view_as(AddOptions)
    audio_dir = options.view_as(AudioDirOptions).audio_dir
    model = options.view_as(ModelOptions)
    common.require_flags(options, "audio_dir", "tables", "model", "out")
    output = options.view_as(common.OutputOptions)
    common.require_complete(model.model, made_by="wavelist train")
    spec = common.load_audio_spec(model.model, made_by="wavelist train")
    info = common.load_model_info(model.model)
    old_summary, old_ids = check_tables(args.tables, info.model_id, spec)
    k = old_summary["k"]
    provenance = {"model_id": info.model_id, "audio_spec": spec.to_dict()}
    runner_flags = [flag for flag in (argv or []) if flag.startswith("--direct_")]

    with common.staged_output(output.out, overwrite=output.overwrite, kind="embed",
                              inputs=[args.tables, model.model, audio_dir]) as staging:
        new_data = posixpath.join(staging, "_new_data")
        ingested = ingest.run(["--audio-dir", audio_dir, "--out", new_data, *runner_flags], spec=spec)
        new_tracks = [r for r in common.read_parquet(common.join(new_data, "tracks.parquet")).to_pylist()
                      if r["status"] == "ok"]
        if not new_tracks:
            raise ValueError(f"{audio_dir}: none of its {ingested['inputs']} audio files could be added (all "
                             f"rejected: {ingested['rejected_per_stage']}); nothing was added")
        clashes = sorted(old_ids & {r["track_id"] for r in new_tracks})
        if clashes:
            raise ValueError(f"{audio_dir}: tracks {clashes[:5]} are already in {args.tables}; nothing was added")
        pipeline = test_pipeline or common.make_pipeline(options, argv)
        old = (pipeline
               | "ReadOld" >> beam.io.ReadFromParquet(posixpath.join(args.tables, "embeddings.parquet"))
               | "OldVectors" >> beam.Map(lambda r: (r["track_id"], np.array(r["embedding"], np.float32))))
        model_dir = model.model if common.is_remote(model.model) else str(Path(model.model).resolve())
        new = pipeline | "EmbedNew" >> TrackVectors(new_data, model_dir, spec,
                                                    info, model.batch_size)
        new_matrix = beam.pvalue.AsSingleton(new | "NewAll" >> beam.combiners.ToList()
                                             | "NewMatrix" >> beam.Map(stack_catalogue))
        cross = (old | "OldBatches" >> beam.BatchElements(min_batch_size=64, max_batch_size=4096)
                 | "CrossTopK" >> beam.FlatMap(cross_top_k, new_matrix, k))
        among_new = (pipeline | "One" >> beam.Create([None])
                     | "NewTopK" >> beam.FlatMap(lambda _, m: new_among_new(m, k), new_matrix))
        stored = (pipeline
                  | "ReadOldNeighbours" >> beam.io.ReadFromParquet(posixpath.join(args.tables, "neighbours.parquet"))
                  | "ByTrack" >> beam.Map(lambda r: (r["track_id"], r))
                  | "GroupOld" >> beam.GroupByKey()
                  | "OldLists" >> beam.MapTuple(lambda t, rows: (t, stored_lists(list(rows)))))
        _ = ((stored, cross, among_new) | "AllPartials" >> beam.Flatten()
             | "Merge" >> beam.CombinePerKey(MergeTopK(k))
             | "AllLists" >> beam.combiners.ToList()
             | "OneBlock" >> beam.Map(lambda lists: [stack_lists(lists)])
             | "WriteNeighbours" >> beam.Map(write_neighbour_table, posixpath.join(staging, "neighbours.parquet"),
                                             tables.with_metadata(tables.NEIGHBOURS, **provenance)))
        every = (old, new) | "AllVectors" >> beam.Flatten()
        common.write_parquet(every | "EmbeddingRows" >> beam.MapTuple(
            lambda i, v: {"track_id": int(i), "embedding": np.asarray(v, np.float32).tolist()}),
            staging, "embeddings.parquet", tables.with_metadata(tables.EMBEDDINGS, **provenance), "WriteEmbeddings")
        old_map = beam.pvalue.AsList(pipeline | "ReadOldMap" >> beam.io.ReadFromParquet(
            posixpath.join(args.tables, "map3d.parquet")))
        common.write_parquet(every | "Everything" >> beam.combiners.ToList() | "Place" >> beam.FlatMap(place_new, old_map),
                    staging, "map3d.parquet", tables.with_metadata(tables.MAP3D, **provenance), "WriteMap")
        track_rows = ((pipeline | "ReadOldTracks" >> beam.io.ReadFromParquet(posixpath.join(args.tables, "tracks.parquet"))
                       | "TagColumns" >> beam.Map(lambda row: {n: row.get(n) for n in tables.TRACKS.names})),
                      (pipeline | "NewTracks" >> beam.Create(new_tracks))) | "AllTracks" >> beam.Flatten()
        common.write_parquet(track_rows, staging, "tracks.parquet", tables.TRACKS, "WriteTracks")
        common.run_pipeline(pipeline)
        common.remove(new_data)
        summary = {**old_summary, "tracks_added": len(new_tracks), "added_from": audio_dir,
                   "add_rejects": ingested["rejected"],
                   "tracks_embedded": common.parquet_num_rows(common.join(staging, "embeddings.parquet")),
                   "neighbour_rows": common.parquet_num_rows(common.join(staging, "neighbours.parquet"))}
        common.write_text(common.join(staging, "summary.json"), json.dumps(summary, indent=2) + "\n")
    log.info("add: %d tracks added -> %s", len(new_tracks), output.out)
    return summary
