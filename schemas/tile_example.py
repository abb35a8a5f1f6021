"""The tile record: one ``tf.train.Example`` per log-mel tile, written to uncompressed TFRecord shards.

Ingest workers never import TensorFlow, and the ``tfrecord`` package's generated ``example_pb2`` cannot
share a process with TensorFlow (both register ``tensorflow.Example`` in protobuf's global pool). So the
Example message is declared here in a private ``DescriptorPool``: same field numbers and types as
``tensorflow/core/example/example.proto``, hence byte-identical records that ``tf.data`` parses, and
safe to import beside TensorFlow in one process.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from schemas.audio import AudioSpec
from schemas.errors import UserError
from schemas.layout import DataFiles

TILES_FOLDER = DataFiles.TILES  # DATA/tiles/{split}-SSSSS-of-NNNNN.tfrecord
# The shards' compression, defined here once for the writer (Beam, ingest) and both readers (Beam in embed,
# tf.data in train), with the file suffix that follows from it. None: GZIP cost about 10 ms of the 64 ms of
# analysis per 30-s clip, and float16 log-mel values compress little (benchmarks/RESULTS.md, issue 21).
TILE_COMPRESSION = "uncompressed"  # or "gzip"
TILE_COMPRESSION_BEAM = TILE_COMPRESSION  # apache_beam.io.filesystem.CompressionTypes values are these strings
TILE_COMPRESSION_TF = {"uncompressed": "", "gzip": "GZIP"}[TILE_COMPRESSION]  # tf.data.TFRecordDataset's names
TILE_FILE_SUFFIX = {"uncompressed": ".tfrecord", "gzip": ".tfrecord.gz"}[TILE_COMPRESSION]
MEL_DTYPE = np.dtype("<f2")  # float16, little-endian: half the size, ample for dB values
FEATURES: dict[str, str] = {
    "track_id": "int64",
    "tile_index": "int64",
    "mel": "bytes",  # MEL_DTYPE values, row-major [n_mels, tile_frames]
}

_EXAMPLE_PROTO = """
name: "wavelist_example.proto"
package: "wavelist_example"
syntax: "proto3"
message_type {
  name: "BytesList"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_BYTES }
}
message_type {
  name: "FloatList"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_FLOAT options { packed: true } }
}
message_type {
  name: "Int64List"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_INT64 options { packed: true } }
}
message_type {
  name: "Feature"
  field { name: "bytes_list" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".wavelist_example.BytesList" oneof_index: 0 }
  field { name: "float_list" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".wavelist_example.FloatList" oneof_index: 0 }
  field { name: "int64_list" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".wavelist_example.Int64List" oneof_index: 0 }
  oneof_decl { name: "kind" }
}
message_type {
  name: "Features"
  field { name: "feature" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".wavelist_example.Features.FeatureEntry" }
  nested_type {
    name: "FeatureEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
            type_name: ".wavelist_example.Feature" }
    options { map_entry: true }
  }
}
message_type {
  name: "Example"
  field { name: "features" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".wavelist_example.Features" }
}
"""


def _build_example_class() -> type:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(text_format.Parse(_EXAMPLE_PROTO, descriptor_pb2.FileDescriptorProto()))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("wavelist_example.Example"))


Example = _build_example_class()


class Tile(NamedTuple):
    track_id: int
    tile_index: int
    mel: np.ndarray  # [shape=(n_mels, tile_frames)], float32


def encode_tile(*, track_id: int, tile_index: int, mel: np.ndarray) -> bytes:
    """Serialise one tile as ``tf.train.Example`` bytes."""
    example = Example()
    feature = example.features.feature
    feature["track_id"].int64_list.value.append(int(track_id))
    feature["tile_index"].int64_list.value.append(int(tile_index))
    feature["mel"].bytes_list.value.append(np.ascontiguousarray(mel, dtype=MEL_DTYPE).tobytes())
    return example.SerializeToString()


def decode_tile(record: bytes, spec: AudioSpec) -> Tile:
    """Parse ``tf.train.Example`` bytes back into a :class:`Tile` (numpy only, no TensorFlow)."""
    example = Example.FromString(record)
    feature = example.features.feature
    missing = [name for name in FEATURES if name not in feature]
    if missing:
        raise UserError(f"tile record lacks features {missing}")
    mel = np.frombuffer(feature["mel"].bytes_list.value[0], dtype=MEL_DTYPE)
    if mel.size != spec.n_mels * spec.tile_frames:
        raise UserError(f"tile has {mel.size} values, expected {spec.tile_shape} from the audio spec")
    return Tile(
        track_id=int(feature["track_id"].int64_list.value[0]),
        tile_index=int(feature["tile_index"].int64_list.value[0]),
        mel=mel.reshape(spec.tile_shape).astype(np.float32),
    )


def tf_feature_spec() -> dict[str, Any]:
    """The same features as a ``tf.io.parse_example`` spec (imports TensorFlow)."""
    import tensorflow as tf

    kinds = {"int64": tf.int64, "bytes": tf.string}
    return {name: tf.io.FixedLenFeature([], kinds[kind]) for name, kind in FEATURES.items()}


def tf_decode_mel(raw: Any, spec: AudioSpec) -> Any:
    """``mel`` bytes to a float32 tensor of ``spec.tile_shape`` (TensorFlow graph code)."""
    import tensorflow as tf

    mel = tf.io.decode_raw(raw, tf.float16, little_endian=True)
    return tf.cast(tf.reshape(mel, spec.tile_shape), tf.float32)
