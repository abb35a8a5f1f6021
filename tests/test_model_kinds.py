"""Every model kind trains on the session's tiny catalogue and exports a tile/feature -> unit vector model."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from model import evaluate, train
from schemas.errors import UserError
from schemas.layout import ModelFiles
from storage import files


@pytest.fixture(scope="module")
def kinds(pipeline_outputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    data = pipeline_outputs["data"]
    flags = {"contrastive": ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--min-genre-tracks", "7"],
             "autoencoder": ["--epochs", "1"], "features": []}
    for kind, extra in flags.items():
        train.run(["--data", str(data), "--out", str(root / kind), "--model", kind, "--verbose", "0", *extra])
    return {"cnn": pipeline_outputs["model"], **{kind: root / kind for kind in flags}}


@pytest.mark.parametrize("kind", ["contrastive", "autoencoder", "features"])
def test_each_kind_exports_a_unit_64d_embedder(kinds, pipeline_outputs, kind):
    info = files.load_model_info(kinds[kind])
    assert info.kind == kind and info.model_id.startswith(kind)
    assert info.input == {"features": "features", "contrastive": "tiles+features"}.get(kind, "tiles")
    vectors = evaluate.embed_catalogue(kinds[kind], pipeline_outputs["data"])
    assert vectors.full.shape == (32, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors.full, axis=1), 1.0, atol=1e-5)


def test_embed_job_joins_the_learned_and_summary_halves_as_evaluate_does(kinds, pipeline_outputs, tmp_path):
    from beam_jobs import embed
    from tests.conftest import IN_MEMORY

    summary = embed.run(["--data", str(pipeline_outputs["data"]), "--model", str(kinds["contrastive"]),
                         "--out", str(tmp_path / "t"), "--k", "5", *IN_MEMORY])
    assert summary["tracks_embedded"] == 32
    table = pq.read_table(tmp_path / "t" / "undiffused.parquet").to_pydict()  # the recipe's vectors
    job = dict(zip(table["track_id"], np.array(table["embedding"])))
    local = evaluate.embed_catalogue(kinds["contrastive"], pipeline_outputs["data"])
    for track_id, vector in zip(local.ids.tolist(), local.full):
        np.testing.assert_allclose(job[track_id], vector, atol=1e-4)
    # each half is a unit vector scaled by 1/sqrt(2): the learned part and the statistics weigh the same
    halves = np.linalg.norm(local.full[:, :32], axis=1), np.linalg.norm(local.full[:, 32:], axis=1)
    np.testing.assert_allclose(halves, np.sqrt(0.5), atol=1e-5)


def test_genre_part_is_off_when_the_catalogue_has_too_few_labelled_tracks(kinds):
    # the tiny catalogue has 4 training and 2 validation tracks per genre: 6, so a minimum of 7 turns it off
    metrics = json.loads((kinds["contrastive"] / "metrics.json").read_text())
    assert metrics["genre_part"].startswith("off: fewer than two genres with 7 labelled tracks outside the test")
    assert not (kinds["contrastive"] / ModelFiles.GENRE_EMBEDDER).exists()
    assert files.load_model_info(kinds["contrastive"]).genres is None


@pytest.fixture(scope="module")
def with_genres(pipeline_outputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("genres") / "model"
    train.run(["--data", str(pipeline_outputs["data"]), "--out", str(out), "--verbose", "0", "--epochs", "1",
               "--steps-per-epoch", "2", "--batch-size", "8",
               "--genre-weight", str(1 / 3)])  # a 1-epoch model's labels are worth about 0: fix the weight
    return out


def trainer_vectors(model_dir, data_dir) -> dict[int, np.ndarray]:
    """Track vectors computed the trainer's way (its chunked predictions and per-track means, in this process)
    through the recipe."""
    from core import vectors as recipe
    from model import data, features

    info = files.load_model_info(model_dir)
    tiles, tile_ids = data.load_tiles(data.all_tile_files(data_dir), files.load_audio_spec(data_dir))
    tile_part = train.per_track_mean(train.predict_in_chunks(train.load_embedder(model_dir), tiles), tile_ids)
    ids = np.unique(tile_ids)
    feature_ids, values = features.load_features(data_dir)
    features_half = train.load_embedder(model_dir, ModelFiles.FEATURES_EMBEDDER).predict_on_batch(values)
    row_of = {int(t): i for i, t in enumerate(feature_ids)}
    genre = train.load_embedder(model_dir, ModelFiles.GENRE_EMBEDDER)
    vectors = recipe.track_vectors(info, tiles=tile_part, features=features_half[[row_of[int(t)] for t in ids]],
                                   embedders={"genres": genre.predict_on_batch})
    return dict(zip(ids.tolist(), vectors))


def test_genre_part_joins_the_embed_job_vector_as_a_third_part(with_genres, pipeline_outputs, tmp_path):
    from beam_jobs import embed
    from tests.conftest import IN_MEMORY, TINY_STYLES

    info = files.load_model_info(with_genres)
    assert info.input == "tiles+features+genres" and info.genres == sorted(TINY_STYLES)
    assert info.parts == ("tiles", "features", "genres") and info.part_dims == (32, 32, 4)
    assert info.embedding_dim == 64 + 4
    metrics = json.loads((with_genres / "metrics.json").read_text())["genre_part"]
    assert metrics["labelled_tracks"] == 24 and metrics["labelled_tiles"] > 24 and metrics["training_accuracy"] > 0.5
    embed.run(["--data", str(pipeline_outputs["data"]), "--model", str(with_genres), "--out", str(tmp_path / "t"),
               "--k", "5", *IN_MEMORY])
    table = pq.read_table(tmp_path / "t" / "undiffused.parquet").to_pydict()  # the recipe's vectors, before the diffusion
    job = dict(zip(table["track_id"], np.array(table["embedding"])))
    local = evaluate.embed_catalogue(with_genres, pipeline_outputs["data"])
    assert local.full.shape == (32, 68)
    trainer = trainer_vectors(with_genres, pipeline_outputs["data"])
    for track_id, vector in zip(local.ids.tolist(), local.full):  # one recipe: embed, evaluate and train agree
        np.testing.assert_allclose(job[track_id], vector, atol=1e-5)
        np.testing.assert_allclose(trainer[track_id], vector, atol=1e-5)
    # learned half and statistics half of equal weight; the genre part weighs what its labels are worth
    weight = metrics["weight"]
    assert weight == pytest.approx(1 / 3) and 0 <= metrics["reliability"] <= 1  # --genre-weight wins over the worth
    parts = [np.linalg.norm(local.full[:, a:b], axis=1) ** 2 for a, b in ((0, 32), (32, 64), (64, 68))]
    for part, share in zip(parts, ((1 - weight) / 2, (1 - weight) / 2, weight)):
        np.testing.assert_allclose(part, share, atol=1e-5)
    assert (local.full[:, 64:] >= 0).all()  # probabilities


def test_no_genres_flag_keeps_the_label_free_vector(pipeline_outputs, tmp_path):
    train.run(["--data", str(pipeline_outputs["data"]), "--out", str(tmp_path / "m"), "--verbose", "0",
               "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--no-genres"])
    info = files.load_model_info(tmp_path / "m")
    assert info.input == "tiles+features" and info.embedding_dim == 64


def test_summary_view_trains_the_same_encoder_and_is_recorded(pipeline_outputs, tmp_path):
    flags = ["--data", str(pipeline_outputs["data"]), "--verbose", "0", "--epochs", "1", "--steps-per-epoch", "2",
             "--batch-size", "8", "--no-genres"]
    train.run([*flags, "--out", str(tmp_path / "with"), "--summary-view", "2"])
    train.run([*flags, "--out", str(tmp_path / "without"), "--summary-view", "0"])
    for name, weight in (("with", 2.0), ("without", 0.0)):
        metrics = json.loads((tmp_path / name / ModelFiles.METRICS).read_text())
        assert metrics["summary_view"] == weight
        # only the encoder is exported: the summary network is a training aid, the vector's recipe is unchanged
        assert files.load_model_info(tmp_path / name).input == "tiles+features"
    with pytest.raises(SystemExit) as raised:
        train.run([*flags, "--out", str(tmp_path / "bad"), "--summary-view", "-1"])
    assert raised.value.code == 2


def test_model_id_covers_every_embedder_file(tmp_path):
    # the same tile model with and without a genre part writes other vectors: their ids must differ
    (tmp_path / ModelFiles.EMBEDDER).write_bytes(b"tile model")
    files = [tmp_path / f for f in (ModelFiles.EMBEDDER, ModelFiles.FEATURES_EMBEDDER, ModelFiles.GENRE_EMBEDDER)]
    tiles_only = train.files_digest(files)
    (tmp_path / ModelFiles.GENRE_EMBEDDER).write_bytes(b"genre probe")
    assert train.files_digest(files) != tiles_only
    assert tiles_only == train.files_digest(files[:1])  # a one-file model keeps the id it always had


def test_whitening_layer_gives_unit_variance_on_what_it_was_fitted_on():
    from model.whitening import whitening_layer

    rng = np.random.default_rng(0)
    vectors = (rng.standard_normal((500, 8)) * [10, 5, 1, 1, 0.5, 0.1, 0.1, 0.1] + 3).astype(np.float32)
    layer = whitening_layer(vectors, 4)
    out = np.asarray(layer(vectors))
    assert out.shape == (500, 4)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(np.cov(out.T, bias=False), np.eye(4), atol=1e-2)


def test_embed_job_runs_a_features_model(kinds, pipeline_outputs, tmp_path):
    from beam_jobs import embed
    from tests.conftest import IN_MEMORY

    summary = embed.run(["--data", str(pipeline_outputs["data"]), "--model", str(kinds["features"]),
                         "--out", str(tmp_path / "t"), "--k", "5", *IN_MEMORY])
    assert summary["tracks_embedded"] == 32 and summary["model_id"].startswith("features-")
    vectors = np.stack(pq.read_table(tmp_path / "t" / "embeddings.parquet")["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_evaluate_writes_one_table_for_all_kinds(kinds, pipeline_outputs, tmp_path, capsys):
    results = evaluate.run(["--data", str(pipeline_outputs["data"]), "--models", *[str(kinds[k]) for k in kinds],
                            "--out", str(tmp_path)])
    assert [r["kind"] for r in results] == list(kinds)
    assert {r["diffusion"] for r in results} == {5}  # the track vectors diffused as embed diffuses them
    table = (tmp_path / "evaluation.md").read_text()
    assert "diffused over their 5 nearest" in table
    with pytest.raises(SystemExit) as refused:  # refused where the flag is parsed: one line, exit 2
        evaluate.run(["--data", str(pipeline_outputs["data"]), "--models", str(kinds["features"]), "--out",
                      str(tmp_path), "--diffusion", "-1"])
    assert refused.value.code == 2
    assert "argument --diffusion: give a whole number from 0 to 10000, not -1" in capsys.readouterr().err
    assert sum(line.startswith("| ") for line in table.splitlines()) == 1 + len(kinds)
    assert json.loads((tmp_path / "evaluation.json").read_text())[0]["neighbours"]["queries"] == 8
    assert all((tmp_path / f"{kinds[k].name}-map2d.png").stat().st_size > 1000 for k in kinds)
    features = next(r for r in results if r["kind"] == "features")
    assert np.isnan(features["same_track"]["same_track_r@10"])  # one feature row per track: no excerpts


def test_track_starts_find_each_run_of_one_track():
    from core.vectors import track_starts

    assert track_starts(np.array([5, 5, 7, 7, 7, 2])).tolist() == [0, 2, 5]
    assert track_starts(np.array([3])).tolist() == [0] and track_starts(np.zeros(0, np.int64)).tolist() == []


def test_neighbour_quality_filters_the_artist():
    vectors = np.array([[1, 0], [0.99, 0.1], [0.9, 0.4], [0, 1]], dtype=float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    genres = np.array(["a", "a", "a", "b"])
    artists = np.array([1, 1, 2, 3])
    result = evaluate.neighbour_quality(vectors, genres, artists, np.array([0]), k=2)
    # track 1 shares the artist: candidates in order are 2 (a), 3 (b)
    assert result["genre_p@2"] == pytest.approx(0.5)
    assert result["genre_map"] == pytest.approx(1.0)


def test_same_track_recall_counts_own_second_half():
    a = np.eye(3)
    b = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=float)
    vectors = evaluate.TrackVectors(np.arange(3), a, np.arange(3), a, b)
    assert evaluate.same_track_recall(vectors, {0, 1, 2}, k=1)["same_track_r@1"] == pytest.approx(1 / 3)


@pytest.mark.unit
def test_contrastive_training_grows_with_the_catalogue():
    from model.train import DEFAULT_EPOCHS, contrastive_epochs

    assert contrastive_epochs(7_000, 64, 50) == DEFAULT_EPOCHS["contrastive"]  # the wide corpus: the floor
    assert contrastive_epochs(80_000, 64, 50) == DEFAULT_EPOCHS["contrastive"]  # fma_small: 0.8 pairs per tile
    assert contrastive_epochs(1_000_000, 64, 50) == 157  # fma_large's ~1.07 M tiles: each drawn once
    assert contrastive_epochs(1_000_000, 64, 100) == 79


def test_budget_stops_training_before_an_epoch_that_would_overrun(pipeline_outputs, tmp_path):
    from model import train

    train.run(["--data", str(pipeline_outputs["data"]), "--out", str(tmp_path / "m"), "--epochs", "6",
               "--steps-per-epoch", "2", "--batch-size", "8", "--no-genres", "--budget-minutes", "0.0001",
               "--verbose", "0"])
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["epochs_planned"] == 6 and metrics["epochs_run"] == 1 and metrics["budget_minutes"] == 0.0001


def test_contrastive_reads_the_tiles_from_the_shards_when_they_do_not_fit(pipeline_outputs, tmp_path):
    """--tiles-in-memory-gb 0: the same catalogue trained from the shards; the tiles it counts, the vectors it
    predicts per tile and the exported model agree with the in-memory path."""
    from model import train
    from schemas.audio import AudioSpec

    data = pipeline_outputs["data"]
    train.run(["--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "1", "--steps-per-epoch", "2",
               "--batch-size", "8", "--genre-weight", "0.3", "--tiles-in-memory-gb", "0",
               "--verbose", "0"])
    metrics = json.loads((tmp_path / "m" / ModelFiles.METRICS).read_text())
    in_memory = train.TrainingTiles.of(str(data), files.load_audio_spec(str(data)), 100.0)
    streamed = train.TrainingTiles.of(str(data), files.load_audio_spec(str(data)), 0.0)
    assert metrics["tiles_read_from_shards"] and not in_memory.streamed and streamed.streamed
    assert metrics["tiles"] == in_memory.count == streamed.count and metrics["tracks"] == in_memory.tracks == 32
    assert "genre_part" in metrics and metrics["genre_part"]["labelled_tracks"] > 0
    vectors = evaluate.embed_catalogue(tmp_path / "m", data)
    assert vectors.full.shape[0] == 32
    np.testing.assert_allclose(np.linalg.norm(vectors.full, axis=1), 1.0, atol=1e-5)
    model = train.load_embedder(tmp_path / "m")
    (got, got_ids), (want, want_ids) = streamed.predict(model), in_memory.predict(model)
    np.testing.assert_allclose(train.per_track_mean(got, got_ids), train.per_track_mean(want, want_ids), atol=1e-5)
    import keras  # the tile vectors of the genre pass: the whitening applied to the unit vectors, no second pass
    unit = keras.Model(model.input, model.get_layer("whitening").input)
    np.testing.assert_allclose(train.whitened_outputs(model, in_memory.predict(unit)[0]), want, atol=1e-5)
    sample = streamed.sample(64, 0)  # the first tiles of each of the 3 split shards: at most 22 each
    assert 3 <= len(sample) <= 66 and isinstance(streamed.spec, AudioSpec)
    assert all((in_memory.tiles == tile).all(axis=(1, 2)).any() for tile in sample)  # real tiles of the catalogue
    with pytest.raises(SystemExit) as raised:
        train.run(["--data", str(data), "--out", str(tmp_path / "bad"), "--tiles-in-memory-gb", "-1"])
    assert raised.value.code == 2


def test_training_tiles_without_shards_is_a_user_error(tmp_path):
    from schemas.audio import AudioSpec

    with pytest.raises(UserError, match="no tile shards to train on"):
        train.TrainingTiles.of(str(tmp_path), AudioSpec(), 1.0)
