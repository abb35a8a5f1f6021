import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from schemas import tables
from schemas.audio import AudioSpec, AudioSpecMismatch, DEFAULT_AUDIO_SPEC
from schemas.tile_example import decode_tile, encode_tile
from storage import files

pytestmark = pytest.mark.unit  # pure code: no pipeline, no training


def test_audio_spec_round_trips_through_json(tmp_path):
    spec = AudioSpec(n_mels=64, tile_frames=32)
    files.save_audio_spec(tmp_path, spec)
    assert files.load_audio_spec(tmp_path) == spec
    assert json.loads((tmp_path / "audio_spec.json").read_text())["n_mels"] == 64


def test_audio_spec_mismatch_names_the_parameter():
    with pytest.raises(AudioSpecMismatch, match="n_mels: 128 vs 64"):
        DEFAULT_AUDIO_SPEC.require_same(AudioSpec(n_mels=64), what="the tiles")


def test_a_spec_written_before_the_budget_reads_as_every_tile(tmp_path):
    record = {k: v for k, v in DEFAULT_AUDIO_SPEC.to_dict().items() if k not in ("excerpts", "excerpt_tiles")}
    (tmp_path / "audio_spec.json").write_text(json.dumps(record))
    legacy = files.load_audio_spec(tmp_path)
    assert legacy.excerpts == 0 and legacy.max_tiles is None
    with pytest.raises(AudioSpecMismatch, match="excerpts: 4 vs 0"):
        DEFAULT_AUDIO_SPEC.require_same(legacy, what="the tiles")


def test_the_budget_is_recorded_and_checked(tmp_path):
    spec = DEFAULT_AUDIO_SPEC.with_budget(8, 2)
    files.save_audio_spec(tmp_path, spec)
    assert files.load_audio_spec(tmp_path).max_tiles == 16
    with pytest.raises(AudioSpecMismatch, match="excerpts: 4 vs 8, excerpt_tiles: 3 vs 2"):
        DEFAULT_AUDIO_SPEC.require_same(spec, what="the tiles")
    with pytest.raises(ValueError, match="--excerpts must be 0 or more"):
        DEFAULT_AUDIO_SPEC.with_budget(-1, 3)


def test_missing_audio_spec_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        files.load_audio_spec(tmp_path)


def test_tile_round_trip_keeps_ids_and_values_to_float16_precision():
    mel = np.random.default_rng(0).uniform(-100, 20, DEFAULT_AUDIO_SPEC.tile_shape).astype(np.float32)
    tile = decode_tile(encode_tile(track_id=123456, tile_index=7, mel=mel), DEFAULT_AUDIO_SPEC)
    assert (tile.track_id, tile.tile_index) == (123456, 7)
    np.testing.assert_allclose(tile.mel, mel, atol=0.07)


def test_tile_of_wrong_shape_is_refused():
    record = encode_tile(track_id=1, tile_index=0, mel=np.zeros((64, 128)))
    with pytest.raises(ValueError, match="expected"):
        decode_tile(record, DEFAULT_AUDIO_SPEC)


def test_tile_bytes_parse_in_tensorflow_in_the_same_process():
    import tensorflow as tf

    from schemas.tile_example import tf_decode_mel, tf_feature_spec

    mel = np.arange(128 * 128, dtype=np.float32).reshape(128, 128) % 50
    record = encode_tile(track_id=42, tile_index=3, mel=mel)
    parsed = tf.io.parse_single_example(record, tf_feature_spec())
    assert int(parsed["track_id"]) == 42 and int(parsed["tile_index"]) == 3
    np.testing.assert_array_equal(tf_decode_mel(parsed["mel"], DEFAULT_AUDIO_SPEC).numpy(), mel)
    # the same message as TensorFlow's own Example (map entries may serialise in any order)
    theirs = tf.train.Example()
    theirs.features.feature["track_id"].int64_list.value.append(42)
    theirs.features.feature["tile_index"].int64_list.value.append(3)
    theirs.features.feature["mel"].bytes_list.value.append(mel.astype("<f2").tobytes())
    assert tf.train.Example.FromString(record) == theirs


def test_tile_bytes_equal_the_tfrecord_packages_own_serialisation():
    # The tfrecord package cannot share a process with TensorFlow, so it runs in a child process.
    mel = np.ones((128, 128), np.float16)
    code = (
        "import sys, numpy as np\n"
        "from tfrecord.writer import TFRecordWriter\n"
        "mel = np.ones((128, 128), '<f2').tobytes()\n"
        "sys.stdout.buffer.write(TFRecordWriter.serialize_tf_example("
        "{'track_id': (9, 'int'), 'tile_index': (1, 'int'), 'mel': (mel, 'byte')}))\n"
    )
    theirs = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout
    ours = encode_tile(track_id=9, tile_index=1, mel=mel)
    assert sorted(ours) == sorted(theirs) and len(ours) == len(theirs)
    from schemas.tile_example import Example

    assert Example.FromString(theirs) == Example.FromString(ours)


def test_summary_feature_names_match_schema_width():
    names = tables.summary_feature_names()
    assert len(names) == len(set(names)) == 2 * sum(size for _, size in tables.SUMMARY_FEATURES)
    assert tables.FEATURES.names[1:] == names


def test_metadata_round_trip_and_column_check():
    schema = tables.with_metadata(tables.EMBEDDINGS, model_id="m1", audio_spec={"n_mels": 128})
    assert tables.read_metadata(schema) == {"model_id": "m1", "audio_spec": {"n_mels": 128}}
    bad = pa.schema([("track_id", pa.string())])
    with pytest.raises(ValueError, match="track_id.*string.*missing column 'embedding'"):
        tables.require_columns(bad, tables.EMBEDDINGS, what="x.parquet")
