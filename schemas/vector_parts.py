"""The vector parts, declared once: each part a track vector can have, in the order parts join, with the embedder
file in MODEL that makes it, what that embedder takes, and its length. The recipe (:mod:`core.vectors`) joins the
parts that take model inputs side by side, each of unit length, then passes the joined vector through each part that
takes it. The embed job, ``wavelist add`` and ``update``, the evaluation and the trainer read this table: a new
part is its embedder and one entry here (docs/extending.md, "Adding a vector part")."""
from __future__ import annotations

from dataclasses import dataclass

from schemas.layout import ModelFiles

# What an embedder takes, one input at a time:
TILE_INPUT = "tiles"  # a track's log-mel tiles (DATA/tiles): the part is the unit mean of their outputs, in tile order
TRACK_INPUT = "track features"  # a track's one row of summary statistics (DATA/features.parquet)
JOINED_INPUT = "joined vector"  # the vector of the parts before it, joined: its output is the vector from then on
INPUTS = (TILE_INPUT, TRACK_INPUT, JOINED_INPUT)

PART_DIM = 64  # the length of a learned part


@dataclass(frozen=True)
class VectorPart:
    """One part of a track vector."""

    name: str  # as model_info.json's ``parts`` lists it
    file: str  # its embedder in MODEL; the first part of every model is in ModelFiles.EMBEDDER (:func:`embedder_file`)
    takes: str  # TILE_INPUT, TRACK_INPUT or JOINED_INPUT
    unit: str  # what one of its inputs is called in progress lines
    dim: int | None  # its length; None: one per genre of the model (model_info.json's ``genres``)
    about: str


TILES = "tiles"
FEATURES = "features"
GENRES = "genres"
VECTOR_PARTS = (
    VectorPart(TILES, ModelFiles.EMBEDDER, TILE_INPUT, "tiles", PART_DIM,
               "the mean of the track's tile vectors (the learned encoder)"),
    VectorPart(FEATURES, ModelFiles.FEATURES_EMBEDDER, TRACK_INPUT, "tracks", PART_DIM,
               "the track's summary statistics through the statistics embedder"),
    VectorPart(GENRES, ModelFiles.GENRE_EMBEDDER, JOINED_INPUT, "tracks", None,
               "square roots of the genre probabilities the joined parts predict"),
)
PARTS = tuple(part.name for part in VECTOR_PARTS)  # the order parts join in
_BY_NAME = {part.name: part for part in VECTOR_PARTS}
assert all(p.takes in INPUTS for p in VECTOR_PARTS)
assert [p.takes == JOINED_INPUT for p in VECTOR_PARTS] == sorted(p.takes == JOINED_INPUT for p in VECTOR_PARTS), \
    "a part that takes the joined vector comes after every part that takes model inputs"


def part(name: str) -> VectorPart:
    """The declaration of the part ``name``; a ``KeyError`` naming it if there is none."""
    return _BY_NAME[name]


def input_parts(parts: tuple[str, ...]) -> tuple[VectorPart, ...]:
    """Those of ``parts`` whose embedder takes model inputs (tiles or track features), in order."""
    return tuple(part(p) for p in parts if part(p).takes != JOINED_INPUT)


def joined_parts(parts: tuple[str, ...]) -> tuple[VectorPart, ...]:
    """Those of ``parts`` whose embedder takes the joined vector, in order."""
    return tuple(part(p) for p in parts if part(p).takes == JOINED_INPUT)


def embedder_file(parts: tuple[str, ...], name: str) -> str:
    """The embedder file of part ``name`` in a model whose vector has ``parts``: the first part's is always
    ``embedder.keras`` (a model of one part has that file only), every other part's its own."""
    return ModelFiles.EMBEDDER if name == parts[0] else part(name).file


def embedder_files() -> tuple[str, ...]:
    """Every embedder file a model may hold, in the table's order, each once (the model id's digest covers them)."""
    return tuple(dict.fromkeys([ModelFiles.EMBEDDER, *(p.file for p in VECTOR_PARTS)]))
