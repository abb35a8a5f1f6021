"""Audio parameters shared by ingest, training and embedding.

The parameters travel with the data: ingest writes them as ``audio_spec.json`` beside its outputs, the
trainer copies them into the model folder, and the embedding job refuses data made with other ones (the file
is read and written by ``storage.files.load_audio_spec`` and ``save_audio_spec``).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from schemas.errors import UserError


class AudioSpecMismatch(UserError):
    """Two artefacts were made with different audio parameters."""


@dataclasses.dataclass(frozen=True)
class AudioSpec:
    """How a track becomes log-mel tiles.

    A tile is ``n_mels`` x ``tile_frames`` log-mel frames, about ``tile_seconds`` of audio; consecutive
    tiles of one track start ``tile_hop_frames`` frames apart. The summary statistics (mean and std
    over time of frame-wise features) use every ``summary_frame_step``-th STFT frame: an unbiased sample
    of the same frames at a fraction of the cost.

    The analysis budget: a track longer than ``excerpts`` x ``excerpt_tiles`` tiles is analysed from
    ``excerpts`` excerpts of ``excerpt_tiles`` tiles spread evenly over it (only those are decoded where the
    format can seek); shorter tracks, and every track when ``excerpts`` is 0, are analysed whole. Only the first
    ``max_duration_s`` seconds of a track count.
    """

    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float = 11025.0
    tile_frames: int = 128
    tile_hop_frames: int = 128
    summary_frame_step: int = 8
    excerpts: int = 4
    excerpt_tiles: int = 3
    max_duration_s: float = 600.0
    silence_rms: float = 1e-4
    log_amin: float = 1e-10

    @property
    def tile_seconds(self) -> float:
        return self.tile_frames * self.hop_length / self.sample_rate

    @property
    def max_tiles(self) -> int | None:
        """The most tiles a track gives (``excerpts`` x ``excerpt_tiles``), or None: every tile."""
        return self.excerpts * self.excerpt_tiles if self.excerpts else None

    @property
    def excerpt_samples(self) -> int:
        """Samples (at ``sample_rate``) of one excerpt: exactly ``excerpt_tiles`` tiles of STFT frames."""
        return self.excerpt_tiles * self.tile_frames * self.hop_length

    @property
    def tile_shape(self) -> tuple[int, int]:
        """``(n_mels, tile_frames)``: the shape of one tile."""
        return (self.n_mels, self.tile_frames)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AudioSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise AudioSpecMismatch(f"unknown audio parameters {sorted(unknown)}")
        # written before the analysis budget existed: every tile of every track was analysed
        return cls(**{"excerpts": 0, **values})

    def with_budget(self, excerpts: int, excerpt_tiles: int) -> "AudioSpec":
        """This spec with another analysis budget; a budget that cannot be is a :class:`UserError`."""
        if excerpts < 0 or excerpt_tiles < 1:
            raise UserError(f"--excerpts must be 0 or more and --excerpt-tiles 1 or more (got {excerpts} and "
                            f"{excerpt_tiles})")
        return dataclasses.replace(self, excerpts=excerpts, excerpt_tiles=excerpt_tiles)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def require_same(self, other: "AudioSpec", *, what: str) -> None:
        """Raise ``AudioSpecMismatch`` naming every parameter where ``other`` differs."""
        if self == other:
            return
        mine, theirs = self.to_dict(), other.to_dict()
        diffs = ", ".join(f"{k}: {mine[k]} vs {theirs[k]}" for k in mine if mine[k] != theirs[k])
        raise AudioSpecMismatch(f"{what} was made with other audio parameters ({diffs})")


DEFAULT_AUDIO_SPEC = AudioSpec()
