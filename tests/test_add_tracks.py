"""Incremental embed: adding tracks gives the same tables as embedding everything anew (diffused tables: the
same new tracks' vectors and neighbour lists, the old tracks' vectors kept)."""
import numpy as np
import pyarrow.parquet as pq
import pytest

from beam_jobs import add_tracks, embed, ingest
from storage import files
from tests.conftest import IN_MEMORY, assert_same_neighbours


def link_folder(folder, files):
    folder.mkdir()
    for path in files:
        (folder / path.name).symlink_to(path)
    return folder


DIFFUSED = "contrastive with genre part, diffused (the default)"


@pytest.fixture(scope="module", params=["cnn, not diffused", DIFFUSED])
def incremental(request, pipeline_outputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("add")
    audio = sorted((pipeline_outputs["catalogue"] / "fma_small").rglob("*.mp3"))
    old, new, both = (link_folder(root / name, files) for name, files in
                      [("old", audio[:24]), ("new", audio[24:]), ("both", audio)])
    model = str(pipeline_outputs["model"])
    diffusion = [] if request.param == DIFFUSED else ["--diffusion", "0"]
    if not request.param.startswith("cnn"):  # the default kind: the new tracks' vectors get their genre part too
        from model import train

        model = str(root / "model")
        train.run(["--data", str(pipeline_outputs["data"]), "--out", model, "--verbose", "0", "--epochs", "1",
                   "--steps-per-epoch", "2", "--batch-size", "8", "--genre-weight", str(1 / 3)])
        assert files.load_model_info(model).input == "tiles+features+genres"
    for name, folder in [("old", old), ("both", both)]:
        ingest.run(["--audio-dir", str(folder), "--out", str(root / f"data-{name}"), *IN_MEMORY])
        embed.run(["--data", str(root / f"data-{name}"), "--model", model, "--out", str(root / f"tables-{name}"),
                   "--k", "5", *diffusion, *IN_MEMORY])
    summary = add_tracks.run(["--audio-dir", str(new), "--tables", str(root / "tables-old"), "--model", model,
                         "--out", str(root / "tables-added"), *IN_MEMORY])
    return root, summary, model


def exact_neighbour_table(vectors: dict[int, np.ndarray], k: int):
    """The neighbours table that exact top-k over ``vectors`` gives (what a full embed of them writes)."""
    import pyarrow as pa

    from core.neighbours import top_k_cosine

    ids = np.array(sorted(vectors), np.int64)
    matrix = np.stack([vectors[int(t)] / np.linalg.norm(vectors[int(t)]) for t in ids]).astype(np.float32)
    found, sims = top_k_cosine(matrix, ids, matrix, ids, k)
    return pa.table({"track_id": np.repeat(ids, found.shape[1]), "rank": np.tile(np.arange(1, found.shape[1] + 1,
                     dtype=np.int32), len(ids)), "neighbour_id": found.reshape(-1), "similarity": sims.reshape(-1)})


def read_sorted(path, key):
    return sorted(pq.read_table(path).to_pylist(), key=key)


def test_added_tables_equal_a_full_recomputation(incremental):
    root, summary, _ = incremental
    assert summary["tracks_added"] == 8 and summary["tracks_embedded"] == 32
    by_id = lambda r: r["track_id"]  # noqa: E731
    added = read_sorted(root / "tables-added" / "embeddings.parquet", by_id)
    full = read_sorted(root / "tables-both" / "embeddings.parquet", by_id)
    old = {r["track_id"]: r["embedding"] for r in pq.read_table(root / "tables-old" / "embeddings.parquet").to_pylist()}
    assert [r["track_id"] for r in added] == [r["track_id"] for r in full]
    # a new track's vector is what a full embed gives it; an old track keeps its own (diffused: the full embed
    # would pull it towards new neighbours; not diffused: the two are the same)
    want = [old.get(r["track_id"], r["embedding"]) for r in full]
    np.testing.assert_allclose([r["embedding"] for r in added], want, atol=1e-5)
    if summary.get("diffusion"):
        assert not np.allclose([r["embedding"] for r in full if r["track_id"] in old], list(old.values()), atol=1e-4)
        before = [read_sorted(root / tables / "undiffused.parquet", by_id) for tables in ("tables-added", "tables-both")]
        np.testing.assert_allclose(*[[r["embedding"] for r in rows] for rows in before], atol=1e-5)
    else:
        assert not (root / "tables-added" / "undiffused.parquet").exists()
    by_rank = [("track_id", "ascending"), ("rank", "ascending")]  # shards come in any track order
    vectors = {r["track_id"]: np.asarray(r["embedding"]) for r in added}
    assert_same_neighbours(pq.read_table(root / "tables-added" / "neighbours.parquet").sort_by(by_rank),
                           exact_neighbour_table(vectors, k=5).sort_by(by_rank), vectors)
    assert {r["track_id"] for r in pq.read_table(root / "tables-added" / "tracks.parquet").to_pylist()} == \
        {r["track_id"] for r in full}
    assert pq.read_table(root / "tables-added" / "map3d.parquet").num_rows == 32


def test_old_tables_are_untouched_and_clashes_refused(incremental, pipeline_outputs):
    root, _, model = incremental
    assert pq.read_table(root / "tables-old" / "embeddings.parquet").num_rows == 24
    with pytest.raises(ValueError, match="already in"):
        add_tracks.run(["--audio-dir", str(root / "old"), "--tables", str(root / "tables-old"), "--model",
                   model, "--out", str(root / "again"), *IN_MEMORY])
    assert not (root / "again").exists()


@pytest.mark.parametrize("incremental", [DIFFUSED], indirect=True)
def test_diffused_tables_without_the_vectors_before_are_refused(incremental, tmp_path):
    """Tables diffused by a wavelist that did not keep ``undiffused.parquet``: add names what is missing."""
    import shutil

    from schemas.errors import UserError

    root, summary, model = incremental
    assert summary["diffusion"]
    old = shutil.copytree(root / "tables-old", tmp_path / "tables-old")
    shutil.rmtree(old / "undiffused.parquet")
    with pytest.raises(UserError, match="undiffused.parquet"):
        add_tracks.run(["--audio-dir", str(root / "new"), "--tables", str(old), "--model", model,
                        "--out", str(tmp_path / "t"), *IN_MEMORY])
    assert not (tmp_path / "t").exists()


def test_tables_of_another_model_are_refused(incremental, tmp_path):
    root, _, model = incremental
    other = tmp_path / "model"
    other.mkdir()
    (other / "model_info.json").write_text('{"model_id": "cnn-other", "kind": "cnn", "input": "tiles"}')
    (other / "audio_spec.json").write_text((root / "data-old" / "audio_spec.json").read_text())
    (other / "_SUCCESS").write_text("")
    with pytest.raises(ValueError, match="not cnn-other"):
        add_tracks.run(["--audio-dir", str(root / "new"), "--tables", str(root / "tables-old"), "--model", str(other),
                   "--out", str(tmp_path / "t"), *IN_MEMORY])


def test_neighbour_comparison_allows_only_tied_swaps():
    import pyarrow as pa

    vectors = {1: np.array([1.0, 0.0]), 2: np.array([0.6, 0.8]), 3: np.array([0.6, -0.8]), 4: np.array([0.0, 1.0])}
    table = lambda ids, sims: pa.table({"track_id": [1, 1], "rank": [1, 2], "neighbour_id": ids,  # noqa: E731
                                        "similarity": sims})
    assert_same_neighbours(table([3, 2], [0.6, 0.6]), table([2, 3], [0.6, 0.6]), vectors)  # a tie: either order
    with pytest.raises(AssertionError):
        assert_same_neighbours(table([4, 3], [0.6, 0.6]), table([2, 3], [0.6, 0.6]), vectors)  # 4 is not as near
