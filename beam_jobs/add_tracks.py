"""Beam job ``wavelist add``: add new audio to existing tables without recomputing them.

    wavelist add --audio-dir NEW_AUDIO --tables TABLES --model MODEL --out NEW_TABLES [beam flags]

The new tracks are ingested (into a temporary DATA inside the staging folder) and embedded; their
neighbours are found among old and new tracks, and each old track's list is merged with its best new
tracks. Because a merged top-k of partial lists is the top-k of the whole, the result equals a full
recomputation of embeddings and neighbours. New tracks join the map at the mean position of their 5 nearest
old tracks (t-SNE is not recomputed). The old TABLES stay untouched; NEW_TABLES appears when complete.

Diffused tables (embed's default): each new track is diffused over its nearest among the old and new tracks'
vectors from before the diffusion (``undiffused.parquet``), exactly as a full embed would diffuse it; the old
tracks keep their diffused vectors (a full embed would pull those with a new track among their nearest a little
towards it), so the result equals a full recomputation for the new tracks and every neighbour list.
"""
from __future__ import annotations

import json
import logging
import posixpath
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow.compute as pc
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import common, ingest
from beam_jobs.embed import (TRACKS_PER_ROW_GROUP, VECTOR_BATCH, MergeTopK, ModelOptions, StackVectors,
                             TrackVectors, embedding_table, map_table, neighbour_tables, stack_block)
from beam_jobs.ingest import AudioDirOptions
from core import vectors as recipe
from core.neighbours import MAP_NEIGHBOURS, diffuse, stack_lists, top_k_cosine
from schemas import tables
from schemas.audio import AudioSpec
from schemas.errors import UserError
from schemas.layout import SUMMARY, DataFiles, TableFiles
from storage import files

log = logging.getLogger(__name__)


def stack_new(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The new tracks' ``(ids, vectors)`` batches -> one ``(ids, vectors)``, rows sorted by id (none: empty)."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    _, ids, vectors = stack_block(0, parts)
    return ids, vectors


def old_among_new(old: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray], k: int):
    """Each old track of the batch ``old``: its top k among the new tracks, ``(track_id, (ids, similarities))``."""
    ids, sims = top_k_cosine(old[1], old[0], new[1], new[0], k)
    yield from ((int(t), (i, s)) for t, i, s in zip(old[0], ids, sims))


def new_among_old(old: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray], k: int):
    """Each new track: its top k among the old tracks of the batch ``old`` (a partial list)."""
    if not len(new[0]) or not len(old[0]):
        return
    ids, sims = top_k_cosine(new[1], new[0], old[1], old[0], k)
    yield from ((int(t), (i, s)) for t, i, s in zip(new[0], ids, sims))


def new_among_new(new: tuple[np.ndarray, np.ndarray], k: int):
    ids, vectors = new
    found, sims = top_k_cosine(vectors, ids, vectors, ids, k)
    yield from ((int(t), (i, s)) for t, i, s in zip(ids, found, sims))


def vectors_of(batch: tuple[np.ndarray, np.ndarray], wanted: np.ndarray):
    """The ``(track_id, vector)`` of the tracks of an ``(ids, vectors)`` batch whose id is in ``wanted``."""
    ids, vectors = batch
    for row in np.flatnonzero(np.isin(ids, wanted)).tolist():
        yield int(ids[row]), vectors[row]


def diffused_new(lists: list[tuple[int, tuple[np.ndarray, np.ndarray]]], new: tuple[np.ndarray, np.ndarray],
                 old_vectors: dict[int, np.ndarray], power: float) -> tuple[np.ndarray, np.ndarray]:
    """New tracks' ``(track_id, (neighbour ids, similarities))`` lists -> their ``(ids, vectors)`` after the
    diffusion (:func:`core.neighbours.diffuse`) over those neighbours, found among ``new`` (every new track's
    undiffused vector) and ``old_vectors`` (the old ones the lists name)."""
    new_ids, new_vectors = new
    old_ids = np.array(sorted(old_vectors), np.int64)
    catalogue_ids = np.concatenate([new_ids, old_ids])
    catalogue = np.concatenate([new_vectors, np.stack([old_vectors[int(t)] for t in old_ids])]
                               if len(old_ids) else [new_vectors]).astype(np.float32)
    row_of = {int(t): row for row, t in enumerate(catalogue_ids)}
    tracks = np.array(sorted(t for t, _ in lists), np.int64)
    found = dict(lists)
    width = max((len(found[int(t)][0]) for t in tracks), default=0)
    rows = np.full((len(catalogue), width), -1, np.int64)  # only the listed new tracks' rows are filled
    sims = np.zeros((len(catalogue), width), np.float32)
    for t in tracks.tolist():
        ids, similarities = found[t]
        rows[row_of[t], :len(ids)] = [row_of[int(i)] for i in ids]
        sims[row_of[t], :len(ids)] = similarities
    diffused = diffuse(catalogue, rows, sims, power=power)
    return tracks, diffused[[row_of[int(t)] for t in tracks]]


class DiffuseNew(beam.PTransform):
    """``(new, old)``, two PCollections of ``(ids, undiffused vectors)`` batches -> the new tracks' ``(ids,
    vectors)`` after the diffusion over their ``neighbours`` nearest among old and new (what embed gives them)."""

    def __init__(self, neighbours: int, power: float):
        super().__init__()
        self._neighbours, self._power = neighbours, power

    def expand(self, new_and_old):
        new, old = new_and_old
        m = self._neighbours
        new_matrix = beam.pvalue.AsSingleton(new | "NewAll" >> beam.combiners.ToList() | "NewMatrix" >> beam.Map(stack_new))
        among_old = old | "AmongOld" >> beam.FlatMap(new_among_old, new_matrix, m)
        among_new = (new.pipeline | "One" >> beam.Create([None])
                     | "AmongNew" >> beam.FlatMap(lambda _, matrix: new_among_new(matrix, m), new_matrix))
        lists = (among_old, among_new) | "Partials" >> beam.Flatten() | "Merge" >> beam.CombinePerKey(MergeTopK(m))
        wanted = beam.pvalue.AsSingleton(lists | "WantedIds" >> beam.FlatMap(lambda pair: pair[1][0].tolist())
                                         | "Wanted" >> beam.combiners.ToList() | "Unique" >> beam.Map(np.unique))
        old_vectors = beam.pvalue.AsDict(old | "WantedVectors" >> beam.FlatMap(vectors_of, wanted))
        return (lists | "Batches" >> beam.BatchElements(min_batch_size=256, max_batch_size=VECTOR_BATCH)
                | "Diffused" >> beam.Map(diffused_new, new_matrix, old_vectors, self._power))


def embedding_batch(table) -> tuple[np.ndarray, np.ndarray]:
    """A batch of ``embeddings.parquet`` rows -> ``(ids, vectors)``."""
    lists = table["embedding"].combine_chunks()
    width = int(lists.value_lengths()[0].as_py()) if len(lists) else 0
    vectors = lists.flatten().to_numpy().astype(np.float32).reshape(len(lists), width)
    return table["track_id"].to_numpy().astype(np.int64), vectors


class ReadVectors(beam.PTransform):
    """A table of vectors (``embeddings.parquet``'s schema, a folder of shards or one file) -> ``(ids, vectors)``
    batches."""

    def __init__(self, table: str):
        super().__init__()
        self._table = table

    def expand(self, pipeline):
        return (pipeline | "Read" >> beam.io.ReadFromParquetBatched(common.table_pattern(self._table))
                | "Vectors" >> beam.Map(embedding_batch))


def stored_lists(table):
    """A batch of ``neighbours.parquet`` rows -> ``(track_id, (ids, similarities))`` per track in it, by rank.
    A track whose rows span two batches gives two partial lists, which the merge joins."""
    table = table.sort_by([("track_id", "ascending"), ("rank", "ascending")])
    track_ids = table["track_id"].to_numpy()
    ids, sims = table["neighbour_id"].to_numpy(), table["similarity"].to_numpy()
    starts = recipe.track_starts(track_ids)
    for start, stop in zip(starts, np.r_[starts[1:], len(track_ids)].astype(int)):
        yield int(track_ids[start]), (ids[start:stop].astype(np.int64), sims[start:stop].astype(np.float32))


def placed_rows(new_track: int, nearest: tuple[np.ndarray, np.ndarray], old_coords: dict[int, tuple] | None = None):
    """Map coordinates of a new track: the mean position of its nearest old tracks."""
    x, y, z = np.mean([old_coords[int(n)] for n in nearest[0]], axis=0)
    return new_track, (float(x), float(y), float(z))


def coords_of(table, wanted: list[int]):
    """The ``(track_id, (x, y, z))`` of the map rows of ``table`` whose track is in ``wanted``."""
    import pyarrow as pa

    kept = table.filter(pa.array(np.isin(table["track_id"].to_numpy(), np.asarray(wanted, np.int64))))
    for row in kept.to_pylist():
        yield row["track_id"], (row["x"], row["y"], row["z"])


class PlaceNewTracks(beam.PTransform):
    """``(new, old, old_map)`` -> map tables of the new tracks, each at the mean position of its
    :data:`~core.neighbours.MAP_NEIGHBOURS` nearest old tracks (t-SNE is not run again). ``new`` and ``old``
    are ``(ids, vectors)`` batches, ``old_map`` the old tracks' ``map3d.parquet`` tables."""

    def expand(self, inputs):
        new, old, old_map = inputs
        new_matrix = beam.pvalue.AsSingleton(new | "NewAll" >> beam.combiners.ToList()
                                             | "NewMatrix" >> beam.Map(stack_new))
        nearest = (old | "NewAmongOld" >> beam.FlatMap(new_among_old, new_matrix, MAP_NEIGHBOURS)
                   | "NearestOld" >> beam.CombinePerKey(MergeTopK(MAP_NEIGHBOURS)))
        wanted = beam.pvalue.AsSingleton(nearest | "WantedIds" >> beam.FlatMap(lambda pair: pair[1][0].tolist())
                                         | "Wanted" >> beam.combiners.ToList())
        old_coords = beam.pvalue.AsDict(old_map | "WantedCoords" >> beam.FlatMap(coords_of, wanted))
        return (nearest | "Place" >> beam.MapTuple(placed_rows, old_coords)
                | "PlacedBatches" >> beam.BatchElements(min_batch_size=256, max_batch_size=VECTOR_BATCH)
                | "PlacedTable" >> beam.Map(lambda rows: map_table(np.array([t for t, _ in rows], np.int64),
                                                                   np.array([c for _, c in rows], np.float32))))


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
        model_dir = model.model if files.is_remote(model.model) else str(Path(model.model).resolve())
        new = (pipeline | "EmbedNew" >> TrackVectors(new_data, model_dir, spec, info,
                                                      model.batch_size)
               | "NewBatches" >> StackVectors(VECTOR_BATCH))
        if diffusion:  # new tracks diffused against the old undiffused vectors, which are kept with theirs
            old_undiffused = pipeline | "ReadUndiffused" >> ReadVectors(undiffused)
            _ = ((old_undiffused, new) | "AllUndiffused" >> beam.Flatten()
                 | "UndiffusedTables" >> beam.Map(embedding_table)
                 | "WriteUndiffused" >> common.WriteTable(staging, TableFiles.UNDIFFUSED,
                                                          tables.with_metadata(tables.EMBEDDINGS, **provenance)))
            new = (new, old_undiffused) | "DiffuseNew" >> DiffuseNew(diffusion["neighbours"], diffusion["power"])
        new_matrix = beam.pvalue.AsSingleton(new | "NewAll" >> beam.combiners.ToList()  # the new tracks only
                                             | "NewMatrix" >> beam.Map(stack_new))
        new_side = old | "NewAmongOld" >> beam.FlatMap(new_among_old, new_matrix, k)
        old_side = old | "OldAmongNew" >> beam.FlatMap(old_among_new, new_matrix, k)
        among_new = (pipeline | "One" >> beam.Create([None])
                     | "NewTopK" >> beam.FlatMap(lambda _, m: new_among_new(m, k), new_matrix))
        stored = (pipeline
                  | "ReadOldNeighbours" >> beam.io.ReadFromParquetBatched(
                      common.table_pattern(files.join(args.tables, TableFiles.NEIGHBOURS)))
                  | "OldLists" >> beam.FlatMap(stored_lists))
        _ = ((stored, old_side, new_side, among_new) | "AllPartials" >> beam.Flatten()
             | "Merge" >> beam.CombinePerKey(MergeTopK(k))
             | "ListBatches" >> beam.BatchElements(min_batch_size=256, max_batch_size=VECTOR_BATCH)
             | "Blocks" >> beam.Map(stack_lists)
             | "NeighbourTables" >> beam.FlatMap(neighbour_tables, TRACKS_PER_ROW_GROUP)
             | "WriteNeighbours" >> common.WriteTable(staging, TableFiles.NEIGHBOURS,
                                                      tables.with_metadata(tables.NEIGHBOURS, **provenance)))
        _ = ((old, new) | "AllVectors" >> beam.Flatten() | "EmbeddingTables" >> beam.Map(embedding_table)
             | "WriteEmbeddings" >> common.WriteTable(staging, TableFiles.EMBEDDINGS,
                                                      tables.with_metadata(tables.EMBEDDINGS, **provenance)))
        # new tracks join the map beside their 5 nearest old tracks; the old rows are copied as they are
        old_map = pipeline | "ReadOldMap" >> beam.io.ReadFromParquetBatched(
            common.table_pattern(files.join(args.tables, TableFiles.MAP3D)))
        placed = (new, old, old_map) | "PlaceNew" >> PlaceNewTracks()
        _ = ((old_map, placed) | "AllMap" >> beam.Flatten()
             | "WriteMap" >> common.WriteTable(staging, TableFiles.MAP3D, tables.with_metadata(tables.MAP3D, **provenance)))
        new_rows = (pipeline | "ReadNewTracks" >> beam.io.ReadFromParquetBatched(
                        common.table_pattern(files.join(new_data, DataFiles.TRACKS)))
                    | "NewOk" >> beam.Map(lambda table: table.filter(pc.equal(table["status"], "ok"))))
        old_rows = (pipeline | "ReadOldTracks" >> beam.io.ReadFromParquetBatched(
                        common.table_pattern(files.join(args.tables, TableFiles.TRACKS)))
                    | "TagColumns" >> beam.Map(tables.with_missing_columns, tables.TRACKS))  # tables before tags
        _ = ((old_rows, new_rows) | "AllTracks" >> beam.Flatten()
             | "WriteTracks" >> common.WriteTable(staging, TableFiles.TRACKS, tables.TRACKS))
        common.run_pipeline(pipeline)
        files.remove(new_data)
        summary = {**old_summary, "tracks_added": len(new_tracks), "added_from": audio_dir,
                   "add_rejects": ingested["rejected"],
                   "tracks_embedded": files.parquet_num_rows(files.join(staging, TableFiles.EMBEDDINGS)),
                   "neighbour_rows": files.parquet_num_rows(files.join(staging, TableFiles.NEIGHBOURS))}
        files.write_text(files.join(staging, SUMMARY), json.dumps(summary, indent=2) + "\n")
    log.info("add: %d tracks added -> %s", len(new_tracks), output.out)
    return summary
