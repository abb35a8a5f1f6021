"""The same inputs give the same splits, tiles and tables: each job run a second time and compared."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from beam_jobs import embed, ingest
from storage import files
from tests.conftest import IN_MEMORY
from tests.records import tiles_by_split


def sorted_rows(path: Path, key: tuple[str, ...] = ("track_id",)) -> list[dict]:
    return sorted(pq.read_table(path).to_pylist(), key=lambda row: tuple(row[k] for k in key))


def assert_same_ingest_output(first: Path, second: Path) -> None:
    """Two DATA folders hold the same tables, tile records, summary and audio parameters."""
    for name in ("tracks.parquet", "features.parquet", "rejects.parquet"):
        assert sorted_rows(first / name) == sorted_rows(second / name), name
    spec = files.load_audio_spec(first)
    assert files.load_audio_spec(second) == spec
    assert tiles_by_split(first, spec) == tiles_by_split(second, spec)
    assert json.loads((first / "summary.json").read_text()) == json.loads((second / "summary.json").read_text())


def test_ingest_twice_gives_the_same_splits_tiles_and_tables(pipeline_outputs, tmp_path):
    catalogue, first = pipeline_outputs["catalogue"], pipeline_outputs["data"]
    second = tmp_path / "data"
    ingest.run(["--fma-metadata", str(catalogue / "fma_metadata"), "--audio-dir", str(catalogue / "fma_small"),
                "--out", str(second), *IN_MEMORY])
    assert_same_ingest_output(first, second)
    splits = {t["track_id"]: t["split"] for t in sorted_rows(second / "tracks.parquet")}
    assert set(splits.values()) == {"train", "validation", "test"}
    tiles = tiles_by_split(second, files.load_audio_spec(second))
    assert all(splits[track_id] == split for split, rows in tiles.items() for track_id, _, _ in rows)


def test_embed_twice_gives_the_same_tables(pipeline_outputs, tmp_path):
    first, second = pipeline_outputs["tables"], tmp_path / "tables"
    embed.run(["--data", str(pipeline_outputs["data"]), "--model", str(pipeline_outputs["model"]),
               "--out", str(second), "--k", "10", *IN_MEMORY])
    one, two = sorted_rows(first / "embeddings.parquet"), sorted_rows(second / "embeddings.parquet")
    assert [r["track_id"] for r in one] == [r["track_id"] for r in two]
    vectors = np.array([r["embedding"] for r in one]), np.array([r["embedding"] for r in two])
    assert np.array_equal(*vectors)  # bit for bit: batches padded to one shape, tiles summed in tile order
    key = ("track_id", "rank")
    one, two = sorted_rows(first / "neighbours.parquet", key), sorted_rows(second / "neighbours.parquet", key)
    assert [(r["track_id"], r["rank"], r["neighbour_id"]) for r in one] == [
        (r["track_id"], r["rank"], r["neighbour_id"]) for r in two]
    assert [r["similarity"] for r in one] == [r["similarity"] for r in two]
    assert sorted_rows(first / "tracks.parquet") == sorted_rows(second / "tracks.parquet")
    for name in ("embeddings.parquet", "neighbours.parquet", "map3d.parquet"):
        assert pq.read_table(first / name).schema.metadata == pq.read_table(second / name).schema.metadata, name
    one, two = sorted_rows(first / "map3d.parquet"), sorted_rows(second / "map3d.parquet")
    assert [r["track_id"] for r in one] == [r["track_id"] for r in two]
    assert one == two
