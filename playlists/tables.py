"""Load the embed job's Parquet tables once, with clear errors for anything missing or mismatched."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import tables as schemas


class TablesError(ValueError):
    """A tables folder that cannot be used as it is."""


class UnknownTrack(LookupError):
    """A track id that the tables do not hold."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


def _read(folder: Path, name: str, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    path = folder / name
    if not path.exists():
        raise TablesError(f"{path} is missing: is {folder} an output of wavelist embed?")
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as error:
        raise TablesError(f"{path} is not a readable Parquet file ({error}); rerun wavelist embed") from error
    expected = pa.schema([schema.field(c) for c in (columns or schema.names)])
    schemas.require_columns(table.schema, expected, what=str(path))
    return table


@dataclass
class Tables:
    """Track vectors (unit length, rows sorted by id), track rows and the neighbour table's location."""

    folder: Path
    ids: np.ndarray  # [shape=(n,)] int64, sorted
    vectors: np.ndarray  # [shape=(n, d)] float32, unit rows
    tracks: dict[int, dict[str, Any]]
    model_id: str
    _row_of: dict[int, int] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._row_of = {int(track_id): row for row, track_id in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, track_id: int) -> int:
        """Row of ``track_id`` in ``vectors``; an unknown id raises :class:`UnknownTrack` with suggestions."""
        try:
            return self._row_of[int(track_id)]
        except KeyError:
            close = difflib.get_close_matches(str(track_id), [str(i) for i in self.ids], n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownTrack(f"track {track_id} is not in {self.folder}{hint}") from None

    def vector(self, track_id: int) -> np.ndarray:
        return self.vectors[self.row(track_id)]

    def track(self, track_id: int) -> dict[str, Any]:
        self.row(track_id)
        return self.tracks.get(int(track_id), {"track_id": int(track_id)})

    def stored_neighbours(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(neighbour_ids, similarities)`` of ``track_id`` from neighbours.parquet, best first."""
        self.row(track_id)
        path = self.folder / "neighbours.parquet"
        table = pq.read_table(path, filters=[("track_id", "=", int(track_id))])
        schemas.require_columns(table.schema, schemas.NEIGHBOURS, what=str(path))
        order = np.argsort(table["rank"].to_numpy())
        return table["neighbour_id"].to_numpy()[order], table["similarity"].to_numpy()[order]


def load_tables(folder: str | Path) -> Tables:
    """Read ``embeddings.parquet`` and ``tracks.parquet`` of an embed output folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TablesError(f"{folder} is not a folder; give the TABLES folder that wavelist embed wrote")
    embeddings = _read(folder, "embeddings.parquet", schemas.EMBEDDINGS)
    model_id = schemas.read_metadata(embeddings.schema).get("model_id", "unknown")
    neighbours_path = folder / "neighbours.parquet"
    if neighbours_path.exists():
        neighbours_model = schemas.read_metadata(pq.read_schema(neighbours_path)).get("model_id", "unknown")
        if neighbours_model != model_id:
            raise TablesError(f"{folder} mixes two models: embeddings from {model_id}, "
                              f"neighbours from {neighbours_model}; rerun wavelist embed")
    ids = embeddings["track_id"].to_numpy()
    vectors = np.stack(embeddings["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    order = np.argsort(ids)
    ids, vectors = ids[order], vectors[order]
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    tracks = {row["track_id"]: row for row in _read(folder, "tracks.parquet", schemas.TRACKS).to_pylist()}
    return Tables(folder=folder, ids=ids, vectors=vectors, tracks=tracks, model_id=model_id)
