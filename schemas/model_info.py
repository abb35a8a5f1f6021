"""``MODEL/model_info.json`` as a typed record: which parts a track vector is made of, and so its length."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from schemas import vector_parts
from schemas.errors import UserError
from schemas.layout import ModelFiles
# The parts a track vector can have, declared once in schemas.vector_parts (the names stay importable from here):
from schemas.vector_parts import FEATURES, GENRES, PART_DIM, PARTS, TILES  # noqa: F401


class ModelInfoError(UserError):
    """A model_info.json that cannot be read as this record."""


@dataclass(frozen=True)
class ModelInfo:
    """What ``wavelist train`` records of a model; the embed job, evaluation and the tests read it here."""

    model_id: str  # "<kind>-<digest of every embedder file>"
    kind: str  # cnn, contrastive, autoencoder or features
    parts: tuple[str, ...]  # e.g. ("tiles", "features", "genres"), in PARTS order (schemas.vector_parts)
    part_dims: tuple[int, ...]  # the length of each part
    genres: list[str] | None = None  # the genre part's genres, in order
    versions: dict[str, str] = field(default_factory=dict)  # tensorflow, keras

    def __post_init__(self) -> None:
        if not self.parts or any(p not in PARTS for p in self.parts) or list(self.parts) != sorted(
                self.parts, key=PARTS.index):
            raise ModelInfoError(f"vector parts {list(self.parts)} are not an ordered selection of {list(PARTS)}")
        if len(self.part_dims) != len(self.parts):
            raise ModelInfoError(f"{len(self.parts)} vector parts but {len(self.part_dims)} part lengths")
        if not vector_parts.input_parts(self.parts):
            raise ModelInfoError(f"vector parts {list(self.parts)}: none takes the model's inputs")
        for name, dim in zip(self.parts, self.part_dims):
            if vector_parts.part(name).dim is None and dim != len(self.genres or []):
                raise ModelInfoError(f"the {name} part needs one dimension per genre")

    @property
    def embedding_dim(self) -> int:
        """The length of a track vector: the sum of its parts'."""
        return sum(self.part_dims)

    @property
    def input(self) -> str:
        """The parts as one name, ``tiles+features+genres`` (what model_info.json called ``input``)."""
        return "+".join(self.parts)

    def has(self, part: str) -> bool:
        return part in self.parts

    def embedder_file(self, part: str) -> str:
        """The file in MODEL of the embedder that makes ``part`` (:func:`schemas.vector_parts.embedder_file`)."""
        return vector_parts.embedder_file(self.parts, part)

    def to_json(self) -> str:
        record = asdict(self)
        record.update(parts=list(self.parts), part_dims=list(self.part_dims), input=self.input,
                      embedding_dim=self.embedding_dim)
        return json.dumps(record, indent=2) + "\n"

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "ModelInfo":
        """The record of a model_info.json, of this or an earlier wavelist (which wrote ``input`` and
        ``embedding_dim`` only: a learned part was then always PART_DIM long)."""
        try:
            parts = tuple(record.get("parts") or record.get("input", TILES).split("+"))
            genres = record.get("genres")
            dims = record.get("part_dims") or [len(genres or []) if vector_parts.part(p).dim is None
                                               else vector_parts.part(p).dim for p in parts]
            return cls(model_id=str(record["model_id"]), kind=str(record["kind"]), parts=parts,
                       part_dims=tuple(int(d) for d in dims), genres=genres,
                       versions=dict(record.get("versions") or {k: record[k] for k in ("tensorflow", "keras")
                                                                 if k in record}))
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise ModelInfoError(f"not a wavelist model_info record ({type(error).__name__}: {error})") from None

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = ModelFiles.INFO) -> "ModelInfo":
        try:
            return cls.from_dict(json.loads(text))
        except ValueError as error:
            raise ModelInfoError(f"{source}: {error}; rerun wavelist train") from None
