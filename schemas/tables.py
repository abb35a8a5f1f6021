"""pyarrow schemas of every Parquet table wavelist writes; writers and readers import them from here."""
from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from schemas.errors import UserError

# Per-track librosa summary features, FMA style: (name, number of coefficients); each gets mean and std.
SUMMARY_FEATURES: tuple[tuple[str, int], ...] = (
    ("mfcc", 20),
    ("chroma_stft", 12),
    ("spectral_contrast", 7),
    ("spectral_centroid", 1),
    ("spectral_bandwidth", 1),
    ("spectral_rolloff", 1),
    ("zcr", 1),
    ("tonnetz", 6),
    ("rms", 1),
)
SUMMARY_STATISTICS = ("mean", "std")


def summary_feature_names() -> list[str]:
    """Column names of the summary features, in the order ``core.audio.summary_features`` fills."""
    return [
        f"{name}_{stat}_{i:02d}"
        for name, size in SUMMARY_FEATURES
        for stat in SUMMARY_STATISTICS
        for i in range(size)
    ]


TRACKS_BEFORE_TAGS = pa.schema(  # what tables written before tags hold (readers fill the rest with nulls)
    [
        ("track_id", pa.int64()),
        ("path", pa.string()),
        ("genre", pa.string()),
        ("artist_id", pa.int64()),
        ("artist", pa.string()),
        ("title", pa.string()),
        ("split", pa.string()),
        ("duration_s", pa.float32()),
        ("n_tiles", pa.int32()),
        ("status", pa.string()),
    ]
)
TRACKS = pa.schema(
    list(TRACKS_BEFORE_TAGS)
    + [  # from the files' tags (core.tags), after the columns that older tables hold
        ("album", pa.string()),
        ("album_artist", pa.string()),
        ("track_number", pa.int32()),
        ("length_s", pa.float32()),  # the whole file's length from its header; duration_s is what was analysed
        ("musicbrainz_recording_id", pa.string()),
        ("musicbrainz_artist_id", pa.string()),
        ("musicbrainz_album_id", pa.string()),
        # the file the path led to when ingest read it (links followed), where that is not the path itself; a
        # player serves the path only while it still leads there (a file swapped for a link is not served)
        ("real_path", pa.string()),
    ]
    + [  # the file (readers fill nulls in tables written before them; wavelist update fills them in once)
        ("audio_identity", pa.string()),  # KIND:HEX of the encoded audio without tag blocks (core.identity)
        ("file_size", pa.int64()),  # bytes, and the modification time in ns: update's first pass compares these
        ("file_mtime_ns", pa.int64()),
    ]
)

FEATURES = pa.schema([("track_id", pa.int64())] + [(n, pa.float32()) for n in summary_feature_names()])

REJECTS = pa.schema(
    [
        ("track_id", pa.int64()),
        ("path", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
    ]
)

# TABLES/rejects.parquet, written by wavelist update: the library's files that could not be analysed, with what
# update's first pass compares, so that an unchanged one is not analysed again at every update
LIBRARY_REJECTS = pa.schema(list(REJECTS) + [("file_size", pa.int64()), ("file_mtime_ns", pa.int64())])

EMBEDDINGS = pa.schema([("track_id", pa.int64()), ("embedding", pa.list_(pa.float32()))])

# ``wavelist embed --extra-vectors FILE``: an external embedding, one row per track; the vector column may also
# be called ``embedding``, so that another wavelist model's embeddings.parquet can be joined as it is.
EXTRA_VECTORS = pa.schema([("track_id", pa.int64()), ("vector", pa.list_(pa.float32()))])
EXTRA_VECTOR_COLUMNS = ("vector", "embedding")

NEIGHBOURS = pa.schema(
    [
        ("track_id", pa.int64()),
        ("rank", pa.int32()),
        ("neighbour_id", pa.int64()),
        ("similarity", pa.float32()),
    ]
)

MAP3D = pa.schema(
    [("track_id", pa.int64()), ("x", pa.float32()), ("y", pa.float32()), ("z", pa.float32())]
)

METADATA_PREFIX = "wavelist."


def with_metadata(schema: pa.Schema, **values: Any) -> pa.Schema:
    """``schema`` with ``values`` stored as JSON under ``wavelist.<key>`` in the file metadata."""
    extra = {f"{METADATA_PREFIX}{k}".encode(): json.dumps(v, sort_keys=True).encode() for k, v in values.items()}
    return schema.with_metadata({**(schema.metadata or {}), **extra})


def read_metadata(schema: pa.Schema) -> dict[str, Any]:
    """The ``wavelist.*`` values that :func:`with_metadata` stored."""
    found = {}
    for key, value in (schema.metadata or {}).items():
        name = key.decode()
        if name.startswith(METADATA_PREFIX):
            found[name[len(METADATA_PREFIX):]] = json.loads(value)
    return found


def with_missing_columns(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with each column of ``schema`` it lacks added as nulls (a table an older version wrote)."""
    for field in schema:
        if table.schema.get_field_index(field.name) < 0:
            table = table.append_column(field, pa.nulls(len(table), field.type))
    return table


def require_columns(schema: pa.Schema, expected: pa.Schema, *, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` if a column of ``expected`` is missing or of another type."""
    problems = []
    for field in expected:
        idx = schema.get_field_index(field.name)
        if idx < 0:
            problems.append(f"missing column {field.name!r}")
        elif not schema.field(idx).type.equals(field.type):
            problems.append(f"column {field.name!r} is {schema.field(idx).type}, expected {field.type}")
    if problems:
        raise UserError(f"{what} does not match its schema: " + "; ".join(problems))
