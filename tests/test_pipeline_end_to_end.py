"""ingest -> train (1 epoch) -> embed -> radio on a tiny catalogue, read back and checked."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.neighbours import top_k_cosine
from schemas import tables
from schemas.audio import AudioSpec, AudioSpecMismatch
from schemas.model_info import ModelInfo
from storage import files
from tests.conftest import assert_same_neighbours


def test_train_writes_model_and_metrics(pipeline_outputs):
    model_dir = pipeline_outputs["model"]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    genres = json.loads((model_dir / "genres.json").read_text())
    assert genres == sorted(genres) and len(genres) == 4
    assert metrics["test"]["tracks"] == 8  # one test artist per style, two tracks each
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert set(metrics["test"]["per_genre"]) == set(genres)
    assert np.array(metrics["test"]["confusion_matrix"]).sum() == 8
    assert (model_dir / "history.csv").read_text().startswith("epoch")
    assert files.load_audio_spec(model_dir) == files.load_audio_spec(pipeline_outputs["data"])


def test_embeddings_are_unit_vectors_one_per_track(pipeline_outputs):
    data, out = pipeline_outputs["data"], pipeline_outputs["tables"]
    accepted = {t["track_id"] for t in pq.read_table(data / "tracks.parquet").to_pylist() if t["status"] == "ok"}
    table = pq.read_table(out / "embeddings.parquet")
    assert table.schema.remove_metadata().equals(tables.EMBEDDINGS)
    meta = tables.read_metadata(table.schema)
    assert meta["model_id"].startswith("cnn-") and meta["audio_spec"] == files.load_audio_spec(data).to_dict()
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    info = ModelInfo.from_json((pipeline_outputs["model"] / "model_info.json").read_text())
    assert info.parts == ("tiles",) and info.embedding_dim == 64
    assert set(table["track_id"].to_pylist()) == accepted
    assert vectors.shape == (len(accepted), info.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embedding_is_the_mean_of_the_models_tile_vectors(pipeline_outputs):
    import tensorflow as tf

    from model.train import load_embedder
    from schemas.tile_example import TILE_COMPRESSION_TF, TILE_FILE_SUFFIX, decode_tile

    data, out = pipeline_outputs["data"], pipeline_outputs["tables"]
    spec = files.load_audio_spec(data)
    path = sorted((data / "tiles").glob(f"test-*{TILE_FILE_SUFFIX}"))[0]
    tiles = [decode_tile(r.numpy(), spec) for r in tf.data.TFRecordDataset(str(path), compression_type=TILE_COMPRESSION_TF)]
    track_id = tiles[0].track_id
    mels = np.stack([t.mel for t in tiles if t.track_id == track_id])
    expected = np.asarray(load_embedder(pipeline_outputs["model"])(mels)).mean(axis=0)
    expected /= np.linalg.norm(expected)
    stored = {r["track_id"]: r["embedding"] for r in pq.read_table(out / "undiffused.parquet").to_pylist()}
    np.testing.assert_allclose(stored[track_id], expected, atol=1e-4)  # before the diffusion (tested in test_embed_job)


def test_neighbour_table_is_exact_top_k(pipeline_outputs):
    out = pipeline_outputs["tables"]
    emb = pq.read_table(out / "embeddings.parquet")
    ids = emb["track_id"].to_numpy()
    vectors = np.stack(emb["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    neighbours = pq.read_table(out / "neighbours.parquet")
    assert neighbours.schema.remove_metadata().equals(tables.NEIGHBOURS)
    assert neighbours.num_rows == len(ids) * 10
    want_ids, want_sims = top_k_cosine(vectors, ids, vectors, ids, 10)
    want = pa.table({"track_id": np.repeat(ids, 10), "rank": np.tile(np.arange(1, 11, dtype=np.int32), len(ids)),
                     "neighbour_id": want_ids.reshape(-1), "similarity": want_sims.reshape(-1)})
    by_rank = [("track_id", "ascending"), ("rank", "ascending")]
    # diffused vectors of one cluster can tie: a swapped pair of equally near tracks passes
    assert_same_neighbours(neighbours.sort_by(by_rank), want.sort_by(by_rank), dict(zip(ids.tolist(), vectors)))


def test_map_and_tracks_tables_cover_every_embedded_track(pipeline_outputs):
    out = pipeline_outputs["tables"]
    ids = set(pq.read_table(out / "embeddings.parquet")["track_id"].to_pylist())
    coords = pq.read_table(out / "map3d.parquet")
    assert set(coords["track_id"].to_pylist()) == ids
    assert np.isfinite(np.stack([coords[c].to_numpy() for c in "xyz"])).all()
    tracks = pq.read_table(out / "tracks.parquet").to_pylist()
    assert {t["track_id"] for t in tracks} == ids and all(t["genre"] and t["path"] for t in tracks)


def test_embed_refuses_tiles_of_other_audio_parameters(pipeline_outputs, tmp_path):
    from beam_jobs import embed

    model_copy = tmp_path / "model"
    model_copy.mkdir()
    for item in pipeline_outputs["model"].iterdir():
        if item.is_file():
            (model_copy / item.name).write_bytes(item.read_bytes())
    files.save_audio_spec(model_copy, AudioSpec(n_mels=64))
    with pytest.raises(AudioSpecMismatch, match="n_mels: 128 vs 64"):
        embed.run(["--data", str(pipeline_outputs["data"]), "--model", str(model_copy), "--out",
                   str(tmp_path / "t")])
    assert not (tmp_path / "t").exists()


def test_neighbour_table_is_sorted_by_track_and_rank(pipeline_outputs):
    """A folder of shards; in each row group, rows sorted by (track_id, rank), with min/max statistics."""
    shards = sorted((pipeline_outputs["tables"] / "neighbours.parquet").glob("part-*.parquet"))
    assert shards
    for shard in shards:
        file = pq.ParquetFile(shard)
        for group in range(file.num_row_groups):
            table = file.read_row_group(group)
            keys = list(zip(table["track_id"].to_pylist(), table["rank"].to_pylist()))
            assert keys == sorted(keys)
            stats = file.metadata.row_group(group).column(0).statistics
            assert stats.has_min_max and stats.min == keys[0][0] and stats.max == keys[-1][0]
