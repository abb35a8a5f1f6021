"""The contracts every other layer reads: audio parameters, the tile Example, the Parquet tables' schemas, the
folders' file names (``layout``), a model's ``model_info``, and the command-line flags' and errors' rules."""
from schemas.audio import AudioSpec, DEFAULT_AUDIO_SPEC
from schemas import tables, tile_example

__all__ = ["AudioSpec", "DEFAULT_AUDIO_SPEC", "tables", "tile_example"]
