"""The one definition of each output folder's layout: the file names of DATA, MODEL and TABLES, what each
holds, and the split names. Every reader and writer takes its names from here."""
from __future__ import annotations

SPLITS = ("train", "validation", "test")  # DATA/tiles/{split}-SSSSS-of-NNNNN.tfrecord.gz

SUCCESS_MARKER = "_SUCCESS"  # written last: JSON naming the command that wrote the folder and every file in it
AUDIO_SPEC = "audio_spec.json"  # the audio parameters (schemas.audio.AudioSpec), beside every output
SUMMARY = "summary.json"  # the job's counts, read back from what it wrote


class DataFiles:
    """``wavelist ingest``'s output."""

    TILES = "tiles"  # folder of TFRecord shards of tile Examples (schemas.tile_example), by split
    TRACKS = "tracks.parquet"  # every input track, accepted or rejected (schemas.tables.TRACKS)
    FEATURES = "features.parquet"  # summary statistics of accepted tracks (schemas.tables.FEATURES)
    REJECTS = "rejects.parquet"  # each rejected track with stage and reason (schemas.tables.REJECTS)
    CATALOGUE = "_catalogue.jsonl"  # the job's input rows, staged for the workers; deleted before publishing


class ModelFiles:
    """``wavelist train``'s output."""

    EMBEDDER = "embedder.keras"  # tiles (or summary statistics, kind features) -> vector
    FEATURES_EMBEDDER = "features_embedder.keras"  # summary statistics -> the second half of a joined vector
    GENRE_EMBEDDER = "genre_embedder.keras"  # joined halves -> final vector with the genre part
    CLASSIFIER = "classifier.keras"  # cnn: tiles -> genre probabilities
    GENRES = "genres.json"  # cnn: the classifier's genre names, in output order
    INFO = "model_info.json"  # schemas.model_info.ModelInfo
    METRICS = "metrics.json"
    HISTORY = "history.csv"  # Keras' per-epoch log
    LOGS = "logs"  # TensorBoard


class TableFiles:
    """``wavelist embed``'s (and ``wavelist add``'s) output, what the playlists read. Each table is a folder of
    Parquet shards ``part-SSSSS-of-NNNNN.parquet`` (one call reads it: pyarrow, pandas; DuckDB with ``/*.parquet``)."""

    EMBEDDINGS = "embeddings.parquet"  # one vector per track (schemas.tables.EMBEDDINGS)
    NEIGHBOURS = "neighbours.parquet"  # top-k per track (schemas.tables.NEIGHBOURS)
    TRACKS = "tracks.parquet"  # the catalogue rows of the embedded tracks (schemas.tables.TRACKS)
    MAP3D = "map3d.parquet"  # 3-D map coordinates (schemas.tables.MAP3D)
    UNDIFFUSED = "undiffused.parquet"  # the vectors before the diffusion (schemas.tables.EMBEDDINGS): what add diffuses against
    REJECTS = "rejects.parquet"  # wavelist update: files of the library that could not be analysed (schemas.tables.LIBRARY_REJECTS)
    UPDATE_STAGING = "_update"  # wavelist update's working files (the new audio's DATA, the catalogue), deleted before publishing
    NEIGHBOUR_REPORT = "_neighbour_report.json"  # approximate search's measured recall, staged, folded into SUMMARY
    INDEX = "_ivf_index.npz"  # approximate search's index, staged for the workers, deleted before publishing
    DIFFUSION_INDEX = "_diffusion_index.npz"  # the same for the diffusion's graph (embed --diffusion)
