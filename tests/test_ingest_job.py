import json

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import ingest
from schemas import tables
from schemas.audio import DEFAULT_AUDIO_SPEC
from storage.files import OutputExists
from tests.conftest import IN_MEMORY, make_catalogue, tone, write_audio


def row(track_id, path, split="train"):
    return {"track_id": track_id, "path": str(path), "genre": "Tone", "artist_id": 1, "artist": "A",
            "title": "t", "split": split}


def test_analyse_tracks_sends_bad_files_to_rejects(tmp_path):
    good = write_audio(tmp_path / "good.wav", tone(440, 4.0, 22050), 22050)
    short = write_audio(tmp_path / "short.wav", tone(440, 0.5, 22050), 22050)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    rows = [row(1, good), row(2, short), row(3, empty), row(4, tmp_path / "missing.mp3")]
    with TestPipeline() as pipeline:
        result = pipeline | beam.Create(rows) | ingest.AnalyseTracks(DEFAULT_AUDIO_SPEC)
        assert_that(result.ok | beam.MapTuple(lambda r, a: (r["track_id"], a.tiles.shape)),
                    equal_to([(1, (1, 128, 128))]), label="ok")
        assert_that(result[ingest.AnalyseTrackFn.REJECTS] | beam.MapTuple(lambda r, stage, _: (r["track_id"], stage)),
                    equal_to([(2, "tile"), (3, "decode"), (4, "read")]), label="rejects")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    catalogue = make_catalogue(tmp_path_factory.mktemp("cat"), artists_per_style=3, seconds=6.0)
    # one known-bad clip of each kind FMA has: empty, truncated, far too short
    audio = sorted((catalogue / "fma_small").rglob("*.mp3"))
    audio[0].write_bytes(b"")
    audio[1].write_bytes(audio[1].read_bytes()[:300])
    write_audio(audio[2], tone(440, 1.0, 22050), 22050, format="MP3")
    out = tmp_path_factory.mktemp("ingest") / "data"
    summary = ingest.run(["--fma-metadata", str(catalogue / "fma_metadata"),
                          "--audio-dir", str(catalogue / "fma_small"), "--out", str(out), *IN_MEMORY])
    return catalogue, out, summary, {int(p.stem) for p in audio[:3]}


def test_ingest_summary_adds_up_and_lists_rejects(ingested):
    _, out, summary, bad_ids = ingested
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == 24 == summary["accepted"] + summary["rejected"]
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    assert {r["track_id"] for r in rejects} == bad_ids
    assert all(r["reason"] for r in rejects)


def test_ingest_tables_follow_their_schemas(ingested):
    _, out, summary, bad_ids = ingested
    for name, schema in [("tracks", tables.TRACKS), ("features", tables.FEATURES), ("rejects", tables.REJECTS)]:
        assert pq.read_schema(out / f"{name}.parquet").remove_metadata().equals(schema), name
    tracks = pq.read_table(out / "tracks.parquet").to_pylist()
    assert {t["track_id"] for t in tracks if t["status"] == "rejected"} == bad_ids
    assert sum(t["n_tiles"] or 0 for t in tracks) == summary["tiles"]
    features = pq.read_table(out / "features.parquet")
    assert features.num_rows == summary["accepted"]
    assert np.isfinite(np.stack([features[c].to_numpy() for c in features.column_names[1:]])).all()


def test_tiles_read_back_with_tf_data_and_never_cross_splits(ingested):
    import tensorflow as tf

    from schemas.tile_example import TILE_COMPRESSION_TF, TILE_FILE_SUFFIX, tf_decode_mel, tf_feature_spec

    _, out, summary, _ = ingested
    split_of = {t["track_id"]: t["split"] for t in pq.read_table(out / "tracks.parquet").to_pylist()}
    seen = 0
    for path in sorted((out / "tiles").glob(f"*{TILE_FILE_SUFFIX}")):
        split = path.name.split("-")[0]
        for record in tf.data.TFRecordDataset(str(path), compression_type=TILE_COMPRESSION_TF):
            parsed = tf.io.parse_single_example(record, tf_feature_spec())
            assert split_of[int(parsed["track_id"])] == split
            assert tf_decode_mel(parsed["mel"], DEFAULT_AUDIO_SPEC).shape == DEFAULT_AUDIO_SPEC.tile_shape
            seen += 1
    assert seen == summary["tiles"]
    assert json.loads((out / "audio_spec.json").read_text()) == DEFAULT_AUDIO_SPEC.to_dict()


def test_existing_output_is_not_overwritten_without_flag(ingested):
    catalogue, out, _, _ = ingested
    before = (out / "summary.json").read_text()
    with pytest.raises(OutputExists, match="--overwrite"):
        ingest.run(["--fma-metadata", str(catalogue / "fma_metadata"),
                    "--audio-dir", str(catalogue / "fma_small"), "--out", str(out), *IN_MEMORY])
    assert (out / "summary.json").read_text() == before


def test_missing_flag_and_missing_catalogue_are_named(tmp_path):
    empty = tmp_path / "empty"  # beside the output: an output inside an input is refused first
    empty.mkdir()
    with pytest.raises(ValueError, match="--audio-dir"):
        ingest.run(["--fma-metadata", str(empty), "--out", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="tracks.csv"):
        ingest.run(["--fma-metadata", str(empty), "--audio-dir", str(empty), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_multi_process_runner_gives_the_same_tracks(tmp_path, ingested):
    catalogue, out, summary, _ = ingested
    again = ingest.run(["--fma-metadata", str(catalogue / "fma_metadata"), "--audio-dir",
                        str(catalogue / "fma_small"), "--out", str(tmp_path / "mp"), "--direct_num_workers=2"])
    assert again == summary
    key = lambda t: t["track_id"]  # noqa: E731
    assert sorted(pq.read_table(tmp_path / "mp" / "tracks.parquet").to_pylist(), key=key) == sorted(
        pq.read_table(out / "tracks.parquet").to_pylist(), key=key)
