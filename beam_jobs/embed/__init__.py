"""Beam job 2, embed: tiles -> model -> one unit vector per track -> neighbour tables and map.

    wavelist embed --data DATA --model MODEL --out TABLES [--k 50] [beam flags]

(``wavelist add`` extends existing tables with new audio: beam_jobs/add_tracks.py.)

Writes ``TABLES/embeddings.parquet``, ``neighbours.parquet``, ``tracks.parquet``, ``map3d.parquet`` and
``summary.json``; the folder appears only when complete. Embeddings and neighbours carry the model id
and audio parameters in their Parquet metadata.
"""
# (The docstring above is ``wavelist embed --help``.) One module per stage, each a composite PTransform around
# pure functions; ``wavelist add`` and ``wavelist update`` compose the same stages:
#
#   model_vectors    tiles / summary features -> the model's vector per track    TrackVectors
#   extra_vectors    an external embedding joined as one more part              JoinExtraVectors
#   exact_neighbours cosine top-k, block against block                          BlockNeighbours
#   index            top-k from a faiss IVF index, its recall measured          IndexNeighbours
#   diffusion        each vector pulled towards its nearest                     Diffuse
#   map3d            layout of a sample, the rest placed beside it              MapCoordinates
#   tracks           the catalogue rows of the embedded tracks                  EmbeddedTracks
#   tail             the stages after the vectors, and the tables they write    EmbedTail
#   job              the flags, build_pipeline and run
#
#   batches          vectors as (ids, vectors) batches between workers
#   model_inputs     the tiles and summary features read back
#   testing          composites only the tests and benchmarks use
from beam_jobs.embed.batches import StackVectors
from beam_jobs.embed.diffusion import Diffuse
from beam_jobs.embed.exact_neighbours import BlockNeighbours
from beam_jobs.embed.extra_vectors import JoinExtraVectors
from beam_jobs.embed.index import IndexNeighbours
from beam_jobs.embed.job import EXACT_LIMIT, OPTIONS, EmbedOptions, build_pipeline, run
from beam_jobs.embed.map3d import MapCoordinates
from beam_jobs.embed.model_vectors import EmbedTracks, ModelOptions, TrackVectors
from beam_jobs.embed.tail import EmbedTail
from beam_jobs.embed.tracks import EmbeddedTracks

__all__ = ["BlockNeighbours", "Diffuse", "EXACT_LIMIT", "EmbedOptions", "EmbedTail",
           "EmbedTracks", "EmbeddedTracks", "IndexNeighbours", "JoinExtraVectors", "MapCoordinates", "ModelOptions",
           "OPTIONS", "StackVectors", "TrackVectors", "build_pipeline", "run"]
