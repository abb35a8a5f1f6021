"""Fixtures: tiny generated audio and one small catalogue run through every stage once per session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
TINY_STYLES = ("Techno", "Ambient", "Chiptune", "Drone")


def tone(freq_hz: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def write_audio(path: Path, audio: np.ndarray, sr: int, **kwargs) -> Path:
    """Write ``audio`` ``[shape=(n,)]`` or ``[shape=(n, channels)]`` in blocks of one second (libsndfile 1.2.2
    crashes on one long write of Ogg Vorbis)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    with soundfile.SoundFile(path, "w", sr, channels, **kwargs) as out:
        for start in range(0, len(audio), sr):
            out.write(audio[start:start + sr])
    return path


def tag(path: Path, **values: str) -> Path:
    """Write easy tags (mutagen's names, e.g. ``title``, ``artist``, ``album``) into ``path``."""
    import mutagen

    opened = mutagen.File(path, easy=True)
    if opened.tags is None:
        opened.add_tags()
    for key, value in values.items():
        opened[key] = value
    opened.save()
    return path


def make_catalogue(folder: Path, *, artists_per_style: int = 4, seconds: float = 8.0) -> Path:
    """A small FMA-layout catalogue of four demo styles, 2 tracks per artist."""
    from wavelist import demo_catalogue

    styles = tuple(s for s in demo_catalogue.STYLES if s.genre in TINY_STYLES)
    return demo_catalogue.generate(folder, seed=1, artists_per_style=artists_per_style, tracks_per_artist=2,
                                   seconds=seconds, styles=styles, progress=False)


def assert_same_neighbours(got, want, embeddings: dict[int, np.ndarray], atol: float = 1e-5) -> None:
    """Two neighbour tables (pyarrow, sorted by track and rank) list equally near tracks at every rank.

    Vectors that agree to float rounding may order two tracks of the same cosine either way, so a different
    neighbour at a rank passes only if its cosine to the track (from ``embeddings``) is that rank's similarity.
    """
    assert got["track_id"].to_pylist() == want["track_id"].to_pylist()
    assert got["rank"].to_pylist() == want["rank"].to_pylist()
    np.testing.assert_allclose(got["similarity"].to_numpy(), want["similarity"].to_numpy(), atol=atol)
    unit = {track: vector / np.linalg.norm(vector) for track, vector in embeddings.items()}
    rows = zip(want["track_id"].to_pylist(), got["neighbour_id"].to_pylist(), want["neighbour_id"].to_pylist(),
               want["similarity"].to_pylist())
    for track, got_id, want_id, similarity in rows:
        assert got_id == want_id or abs(float(unit[track] @ unit[got_id]) - similarity) < atol, (track, got_id)


def table_file(path: Path) -> Path:
    """The one Parquet file of a small table: ``path`` itself, or the single shard of the folder the embed job
    writes (tests that damage or replace a table write this file)."""
    if path.is_file():
        return path
    shards = sorted(path.glob("*.parquet"))
    assert len(shards) == 1, shards
    return shards[0]


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory) -> Path:
    return make_catalogue(tmp_path_factory.mktemp("catalogue"))


@pytest.fixture(scope="session")
def pipeline_outputs(tmp_path_factory, catalogue) -> dict[str, Path]:
    """ingest -> train (1 epoch) -> embed on the session catalogue; the folders of each stage."""
    from beam_jobs import embed, ingest
    from model import train

    root = tmp_path_factory.mktemp("run")
    data, model_dir, tables = root / "data", root / "model", root / "tables"
    ingest.run(["--fma-metadata", str(catalogue / "fma_metadata"), "--audio-dir", str(catalogue / "fma_small"),
                "--out", str(data), *IN_MEMORY])
    train.run(["--data", str(data), "--out", str(model_dir), "--model", "cnn", "--epochs", "1", "--verbose", "0"])
    embed.run(["--data", str(data), "--model", str(model_dir), "--out", str(tables), "--k", "10", *IN_MEMORY])
    return {"catalogue": catalogue, "data": data, "model": model_dir, "tables": tables}
