"""The single source of truth for audio parameters, the tile Example and every Parquet table."""
from schemas.audio import AudioSpec, DEFAULT_AUDIO_SPEC
from schemas import tables, tile_example

__all__ = ["AudioSpec", "DEFAULT_AUDIO_SPEC", "tables", "tile_example"]
