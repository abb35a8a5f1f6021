import numpy as np

from model.train import track_level_predictions


def test_track_level_prediction_is_mean_of_tile_probabilities():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 0, 1, 1])
    track_ids = np.array([7, 7, 3, 3])
    ids, truth, predicted = track_level_predictions(probabilities, labels, track_ids)
    assert ids.tolist() == [3, 7]
    assert truth.tolist() == [1, 0]
    assert predicted.tolist() == [1, 0]  # track 7: mean (0.55, 0.45); track 3: (0.45, 0.55)


def test_exported_embedder_is_centred_unit_embedding_and_survives_saving(tmp_path):
    import keras

    from model import cnn
    from schemas.audio import AudioSpec

    spec = AudioSpec(n_mels=16, tile_frames=16)
    rng = np.random.default_rng(0)
    normaliser = keras.layers.Normalization(axis=1)
    normaliser.adapt(rng.normal(2, 3, (10, 16, 16)).astype("float32"))
    classifier = cnn.build_genre_cnn(spec, 3, normaliser)
    tiles = rng.standard_normal((6, 16, 16)).astype("float32")
    raw = cnn.embedding_outputs(classifier)(tiles).numpy()
    centre = raw.mean(axis=0)
    expected = (raw - centre) / np.linalg.norm(raw - centre, axis=1, keepdims=True)
    embedder = cnn.embedder_of(classifier, centre)
    embedder.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras", compile=False)
    np.testing.assert_allclose(loaded(tiles).numpy(), expected, atol=1e-5)
    assert loaded.output_shape == (None, 64)


def test_nt_xent_is_lower_for_matching_views():
    import tensorflow as tf

    from model.contrastive import nt_xent

    rng = np.random.default_rng(0)
    z = rng.standard_normal((8, 16)).astype("float32")
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    other = rng.standard_normal((8, 16)).astype("float32")
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    loss = nt_xent(0.1)
    matching = float(tf.reduce_mean(loss(None, tf.constant(np.stack([z, z], axis=1)))))
    unrelated = float(tf.reduce_mean(loss(None, tf.constant(np.stack([z, other], axis=1)))))
    assert matching < 0.1 < unrelated


def test_nt_xent_summary_view_adds_its_own_term():
    import tensorflow as tf

    from model.contrastive import nt_xent

    rng = np.random.default_rng(1)
    z, other = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in rng.standard_normal((2, 8, 16)).astype("float32"))
    tiles_only = float(tf.reduce_mean(nt_xent(0.1)(None, tf.constant(np.stack([z, z, other], axis=1)))))
    matching = float(tf.reduce_mean(nt_xent(0.1, 1.0)(None, tf.constant(np.stack([z, z, z], axis=1)))))
    unrelated = float(tf.reduce_mean(nt_xent(0.1, 1.0)(None, tf.constant(np.stack([z, z, other], axis=1)))))
    assert tiles_only < 0.1 and matching < 0.1 < unrelated  # weight 0 ignores the third view; 1 scores it


def test_pair_dataset_summary_view_is_the_tracks_own():
    from model.contrastive import pair_dataset

    track_ids = np.repeat(np.array([7, 9, 12, 30]), [3, 1, 2, 4])
    tiles = np.repeat(np.arange(4, dtype="float16") * 100, [3, 1, 2, 4])[:, None, None] * np.ones((1, 128, 128), "float16")
    summaries = np.arange(4, dtype="float32")[:, None] * np.ones((1, 5), "float32")
    (a, b, summary), _ = next(iter(pair_dataset(tiles, track_ids, batch_size=4, seed=0, summaries=summaries)))
    assert a.shape == b.shape == (4, 128, 128) and summary.shape == (4, 5)
    # augmentation adds a gain of at most 6 dB and masks with the tile's mean: a tile stays near 100 x its track
    track_of_summary = summary.numpy()[:, 0]
    assert sorted(track_of_summary.tolist()) == [0, 1, 2, 3]  # one pair per track per batch
    for view in (a, b):
        assert np.all(np.abs(np.median(view.numpy(), axis=(1, 2)) - 100 * track_of_summary) <= 6)


def test_run_pairs_are_different_tiles_of_the_run_each_used_once():
    from model.contrastive import run_pairs

    rng = np.random.default_rng(0)
    for length, most, want in ((1, 4, 1), (2, 4, 1), (7, 4, 3), (10, 4, 4), (200, 4, 4), (10, 10, 5)):
        pairs = run_pairs(length, rng, most)
        assert pairs.shape == (want, 2) and pairs.min() >= 0 and pairs.max() < length
        if length > 1:
            assert len(np.unique(pairs)) == 2 * want  # no tile twice, never a tile with itself
    np.testing.assert_array_equal(run_pairs(1, rng), [[0, 0]])  # a one-tile track: the same tile twice


def test_streamed_pairs_are_tiles_of_one_track_with_its_summary(tmp_path):
    """Shards as ingest writes them (a track's tiles together; one track split across two shards), read 4 records
    at a time (runs go on past a read); every pair holds two tiles of one track and that track's summary, and
    every track is drawn."""
    import tensorflow as tf

    from model.contrastive import streamed_pair_dataset
    from schemas.audio import AudioSpec
    from schemas.tile_example import TILE_COMPRESSION_TF, encode_tile

    spec = AudioSpec()
    counts = {7: 3, 9: 1, 12: 2, 30: 13, 41: 5}
    shards = {"a": [(7, i) for i in range(3)] + [(9, 0)] + [(30, i) for i in range(6)],
              "b": [(30, i) for i in range(6, 13)] + [(12, 0), (12, 1)] + [(41, i) for i in range(5)]}
    paths = []
    for name, tiles in shards.items():
        paths.append(str(tmp_path / f"train-{name}.tfrecord"))
        with tf.io.TFRecordWriter(paths[-1], options=TILE_COMPRESSION_TF or None) as writer:
            for track, index in tiles:
                writer.write(encode_tile(track_id=track, tile_index=index,
                                         mel=np.full(spec.tile_shape, 100.0 * list(counts).index(track), np.float16)))
    ids = np.array(list(counts))
    summaries = (ids[:-1], np.arange(len(ids) - 1, dtype="float32")[:, None] * np.ones((1, 3), "float32"))  # 41: none
    batches = streamed_pair_dataset(paths, spec, batch_size=4, seed=0, summaries=summaries, read_batch=4,
                                    shuffle_pairs=64).take(12)
    seen = set()
    for (a, b, summary), _ in batches:
        track_a = np.round(np.median(a.numpy(), axis=(1, 2)) / 100)  # augmentation: within 6 dB of 100 x track
        track_b = np.round(np.median(b.numpy(), axis=(1, 2)) / 100)
        np.testing.assert_array_equal(track_a, track_b)
        for track, row in zip(track_a.astype(int), summary.numpy()):
            np.testing.assert_array_equal(row, track if ids[track] != 41 else 0.0)  # 41's summary: the mean (0)
        seen.update(track_a.astype(int).tolist())
    assert seen == set(range(len(ids)))


def test_standardised_by_track_orders_and_fills_missing_with_the_mean():
    from model.features import standardised_by_track

    values = np.array([[1.0, 10.0], [3.0, 30.0]], np.float32)
    out = standardised_by_track(np.array([5, 8]), values, np.array([8, 6, 5]))
    np.testing.assert_allclose(out, [[1, 1], [0, 0], [-1, -1]], atol=1e-4)


def test_augment_keeps_shape_and_changes_values():
    import tensorflow as tf

    from model.data import augment

    mel = tf.constant(np.random.default_rng(0).normal(-40, 10, (128, 128)).astype("float32"))
    out = augment(mel)
    assert out.shape == mel.shape and not np.allclose(out.numpy(), mel.numpy())


def test_features_embedder_is_standardised_pca(tmp_path):
    from sklearn.decomposition import PCA

    from model.features import features_embedder

    values = np.random.default_rng(0).normal(5, 3, (100, 200)).astype("float32")
    vectors = np.asarray(features_embedder(values)(values))
    standardised = (values - values.mean(0)) / (values.std(0) + 1e-6)
    expected = PCA(n_components=64, random_state=0).fit_transform(standardised)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(np.sum(vectors * expected, axis=1)), 1.0, atol=1e-3)


def test_encoder_variants_time_pooling_and_width():
    """The screened encoder variant (benchmarks/label_free_variants.py --pooling time): the embedding layer sees
    each of the last feature map's frequency bands (32 mel bands / 16 = 2) instead of their mean."""
    import keras

    from model import cnn
    from schemas.audio import AudioSpec

    spec = AudioSpec(n_mels=32, tile_frames=16)
    normaliser = keras.layers.Normalization(axis=1)
    normaliser.adapt(np.random.default_rng(0).normal(0, 1, (4, 32, 16)).astype("float32"))
    inputs = {pooling: cnn.build_encoder(spec, normaliser, pooling=pooling).get_layer(cnn.EMBEDDING_LAYER).kernel.shape
              for pooling in ("global", "time")}
    assert inputs == {"global": (128, 64), "time": (256, 64)}
    wider = cnn.build_encoder(spec, normaliser, width=2)  # the other screened variant: twice the filters
    assert wider.get_layer(cnn.EMBEDDING_LAYER).kernel.shape == (256, 64) and wider.output.shape[-1] == 64


def test_copy_encoder_weights_from_an_exported_embedder(tmp_path):
    import keras

    from model import cnn
    from schemas.audio import AudioSpec

    spec = AudioSpec(n_mels=16, tile_frames=16)
    rng = np.random.default_rng(0)
    normaliser = keras.layers.Normalization(axis=1)
    normaliser.adapt(rng.normal(2, 3, (10, 16, 16)).astype("float32"))
    source = cnn.embedder_of(cnn.build_encoder(spec, normaliser))
    source.save(tmp_path / "e.keras")
    source = keras.saving.load_model(tmp_path / "e.keras", compile=False)
    other = keras.layers.Normalization(axis=1)
    other.adapt(rng.normal(0, 1, (10, 16, 16)).astype("float32"))
    target = cnn.build_genre_cnn(spec, 3, other)
    assert cnn.copy_encoder_weights(source, target) == 10  # normaliser, 4 conv, 4 batch norm, embedding
    tiles = rng.standard_normal((4, 16, 16)).astype("float32")
    expected = np.asarray(source(tiles))
    got = cnn.embedding_outputs(target)(tiles).numpy()
    np.testing.assert_allclose(got / np.linalg.norm(got, axis=1, keepdims=True), expected, atol=1e-5)
