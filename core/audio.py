"""Pure audio code: decode, log-mel, tiles, summary features. No Beam, no TensorFlow."""
from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import BinaryIO

import librosa
import numpy as np
import soundfile
import soxr

from schemas.audio import AudioSpec
from schemas.tables import SUMMARY_FEATURES


# Samples beyond this are not audio (full scale is 1.0): a float file whose samples are finite but huge would
# overflow the power spectrogram to infinity.
MAX_SAMPLE = 1000.0
# Samples decoded before each excerpt and dropped (about 0.19 s at 44.1 kHz; see decode_excerpts).
SEEK_LEAD_IN = 8192


class AudioError(Exception):
    """A track that cannot be used; ``stage`` says where it failed (decode, analyse)."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class Analysis:
    """What ingest keeps of one track."""

    duration_s: float
    tiles: np.ndarray  # [shape=(n_tiles, n_mels, tile_frames)], float32 log-mel dB
    features: np.ndarray  # [shape=(n_features,)], float32, in schemas.tables.summary_feature_names() order


@dataclass(frozen=True)
class Decoded:
    """What :func:`decode_excerpts` keeps of one track."""

    segments: list[np.ndarray]  # each [shape=(n_samples,)], mono float32 at the spec's rate: the whole track, or its excerpts
    duration_s: float  # the track's length, at most ``spec.max_duration_s``


def excerpt_spans(n_samples: int, rate: int, spec: AudioSpec) -> list[tuple[int, int]]:
    """The ``(start, stop)`` sample ranges of a track of ``n_samples`` at ``rate`` Hz that its analysis reads.

    The whole track when ``spec.excerpts`` is 0 or the track is no longer than the budget; otherwise
    ``spec.excerpts`` excerpts of ``spec.excerpt_samples`` (counted at ``spec.sample_rate``) centred at
    (i + 0.5) / excerpts of the track: spread over it, neither its first nor its last seconds alone.
    """
    length = round(spec.excerpt_samples * rate / spec.sample_rate)
    if not spec.excerpts or n_samples <= spec.excerpts * length:
        return [(0, n_samples)]
    starts = [round((i + 0.5) * n_samples / spec.excerpts - length / 2) for i in range(spec.excerpts)]
    return [(start, start + length) for start in (min(max(s, 0), n_samples - length) for s in starts)]


def decode_excerpts(source: str | BinaryIO, spec: AudioSpec) -> Decoded:
    """Decode the parts of ``source`` that :func:`excerpt_spans` names, as mono float32 at ``spec.sample_rate``.

    soundfile (libsndfile reads WAV, FLAC, OGG and MP3) seeks to each excerpt and decodes only those; a
    format it cannot seek in is decoded whole (audioread through librosa for what libsndfile cannot read) and
    cut afterwards, at the same sample positions.
    """
    # a local name is handed over as bytes: soundfile would refuse a name that is not UTF-8 (surrogate escapes)
    opened = os.fsencode(source) if isinstance(source, str) else source
    try:
        with soundfile.SoundFile(opened) as sound:
            native_rate = sound.samplerate
            if sound.frames > 0 and sound.seekable():
                n_samples = min(sound.frames, int(spec.max_duration_s * native_rate))
                segments = []
                for start, stop in excerpt_spans(n_samples, native_rate, spec):
                    # an MP3 decoder needs the frames before a seek point to rebuild its first samples (they came
                    # out wrong for up to 0.1 s without): decode a little earlier and drop that part
                    lead_in = min(start, SEEK_LEAD_IN)
                    sound.seek(start - lead_in)
                    frames = sound.read(frames=stop - start + lead_in, dtype="float32", always_2d=True)
                    segments.append(to_mono(frames[lead_in:]))
            else:
                frames = min(sound.frames, int(spec.max_duration_s * native_rate)) if sound.frames > 0 else -1
                whole = to_mono(sound.read(frames=frames, dtype="float32", always_2d=True))
                n_samples, segments = whole.size, None
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as sf_error:
        if not isinstance(source, str):
            raise AudioError("decode", f"unreadable audio ({sf_error})") from sf_error
        try:
            whole, native_rate = _decode_with_audioread(source, spec.max_duration_s)
        except Exception as ar_error:  # audioread's backends raise many unrelated types
            raise AudioError("decode", f"unreadable audio ({sf_error}; {ar_error})") from ar_error
        n_samples, segments = whole.size, None
    if segments is None:
        segments = [whole[start:stop] for start, stop in excerpt_spans(n_samples, native_rate, spec)]
    if n_samples == 0 or not any(segment.size for segment in segments):
        raise AudioError("decode", "no audio samples")
    for segment in segments:
        if not np.all(np.isfinite(segment)):
            raise AudioError("decode", "audio holds NaN or infinite samples")
        peak = float(np.max(np.abs(segment))) if segment.size else 0.0
        if peak > MAX_SAMPLE:
            raise AudioError("decode", f"sample values out of range (peak {peak:.3g}; full scale is 1.0)")
    if native_rate != spec.sample_rate:
        segments = [soxr.resample(segment, native_rate, spec.sample_rate, quality="HQ") for segment in segments]
    return Decoded([np.ascontiguousarray(segment, dtype=np.float32) for segment in segments],
                   duration_s=n_samples / native_rate)


def decode(source: str | BinaryIO, spec: AudioSpec) -> np.ndarray:
    """The whole of ``source`` (no excerpts), mono float32 at ``spec.sample_rate``, at most
    ``spec.max_duration_s`` long: ``[shape=(n_samples,)]``."""
    return decode_excerpts(source, dataclasses.replace(spec, excerpts=0)).segments[0]


def to_mono(frames: np.ndarray) -> np.ndarray:
    """Mono samples of ``[shape=(n_samples, n_channels)]`` frames: the mean of the channels, or the loudest
    channel when the mean cancels out (channels in opposite phase, as some tracker-module renders are: their
    mean is more than 20 dB quieter than the loudest channel), so that a loud track is not taken for silence."""
    # a matrix product downmixes 40x faster than frames.mean(axis=1) on [n, 2] float32
    mono = frames @ np.full(frames.shape[1], 1.0 / frames.shape[1], dtype=np.float32)
    if frames.shape[1] > 1 and frames.size:
        channel_power = np.einsum("ij,ij->j", frames, frames)
        if 100 * float(mono @ mono) < float(channel_power.max()):
            return np.ascontiguousarray(frames[:, channel_power.argmax()])
    return mono


def _decode_with_audioread(path: str, max_duration_s: float) -> tuple[np.ndarray, int]:
    """Mono float32 samples and rate through audioread (ffmpeg or GStreamer, where installed)."""
    import audioread

    with audioread.audio_open(path) as sound:
        rate, channels = sound.samplerate, sound.channels
        limit = int(max_duration_s * rate) * channels
        chunks, total = [], 0
        for buffer in sound:
            chunks.append(librosa.util.buf_to_float(buffer, n_bytes=2, dtype=np.float32))
            total += chunks[-1].size
            if total >= limit:
                break
    samples = np.concatenate(chunks)[:limit] if chunks else np.zeros(0, np.float32)
    return to_mono(samples[: samples.size - samples.size % channels].reshape(-1, channels)), rate


def power_spectrogram(audio: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """|STFT|^2 of ``audio``: ``[shape=(1 + n_fft // 2, n_frames)]``."""
    return np.abs(librosa.stft(audio, n_fft=spec.n_fft, hop_length=spec.hop_length)) ** 2


@functools.lru_cache(maxsize=4)
def _mel_basis(spec: AudioSpec) -> np.ndarray:
    return librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin,
                               fmax=spec.fmax).astype(np.float32)


def log_mel(power: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Log-mel (dB re 1.0) of a power spectrogram: ``[shape=(n_mels, n_frames)]``, float32.

    The same as ``librosa.feature.melspectrogram(S=power, ...)`` with the filter bank built once per process.
    """
    mel = _mel_basis(spec) @ power
    return librosa.power_to_db(mel, ref=1.0, amin=spec.log_amin, top_db=None).astype(np.float32)


def tiles(mel: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Cut a log-mel ``[shape=(n_mels, n_frames)]`` into tiles ``[shape=(n_tiles, n_mels, tile_frames)]``.

    Tiles start every ``tile_hop_frames`` frames; a tail shorter than a tile is dropped.
    """
    if mel.shape[1] < spec.tile_frames:
        raise AudioError("tile", f"audio shorter than one tile ({spec.tile_seconds:.2f} s)")
    framed = librosa.util.frame(mel, frame_length=spec.tile_frames, hop_length=spec.tile_hop_frames, axis=-1)
    return np.ascontiguousarray(np.moveaxis(framed, -1, 0))


def frame_features(audio: np.ndarray, power: np.ndarray, mel_db: np.ndarray, spec: AudioSpec) -> dict[str, np.ndarray]:
    """The frame-wise features behind the summary statistics, each ``[shape=(size, n_frames)]``, from the shared
    STFT of ``audio``, on every ``spec.summary_frame_step``-th frame."""
    sr, step = spec.sample_rate, spec.summary_frame_step
    power, mel_db = power[:, ::step], mel_db[:, ::step]
    magnitude = np.sqrt(power)
    # tuning=0: the 12 chroma bins at standard pitch; estimating the tuning costs more than all the rest
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=spec.n_fft, tuning=0.0)
    return {
        "mfcc": librosa.feature.mfcc(S=mel_db, n_mfcc=20),
        "chroma_stft": chroma,
        "spectral_contrast": librosa.feature.spectral_contrast(S=magnitude, sr=sr, n_fft=spec.n_fft),
        "spectral_centroid": librosa.feature.spectral_centroid(S=magnitude, sr=sr, n_fft=spec.n_fft),
        "spectral_bandwidth": librosa.feature.spectral_bandwidth(S=magnitude, sr=sr, n_fft=spec.n_fft),
        "spectral_rolloff": librosa.feature.spectral_rolloff(S=magnitude, sr=sr, n_fft=spec.n_fft),
        "zcr": librosa.feature.zero_crossing_rate(audio, frame_length=spec.n_fft, hop_length=spec.hop_length * step),
        "tonnetz": librosa.feature.tonnetz(sr=sr, chroma=chroma),
        "rms": librosa.feature.rms(S=magnitude, frame_length=spec.n_fft),
    }


def summary_of(per_frame: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Mean and std over time of each feature, over the frames of every segment together:
    ``[shape=(n_features,)]`` in the order of ``schemas.tables.summary_feature_names()``."""
    columns = []
    for name, size in SUMMARY_FEATURES:
        values = np.concatenate([segment[name] for segment in per_frame], axis=1)
        if values.shape[0] != size:
            raise AssertionError(f"{name} has {values.shape[0]} coefficients, schema says {size}")
        columns += [values.mean(axis=1), values.std(axis=1)]
    return np.concatenate(columns).astype(np.float32)


def summary_features(audio: np.ndarray, power: np.ndarray, mel_db: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """FMA-style librosa statistics (mean and std of each feature over time) of one stretch of audio, from the
    shared STFT. Returns ``[shape=(n_features,)]`` in the order of ``schemas.tables.summary_feature_names()``."""
    return summary_of([frame_features(audio, power, mel_db, spec)])


def analyse(audio: np.ndarray, spec: AudioSpec) -> Analysis:
    """Tiles and summary features of decoded mono ``audio`` at ``spec.sample_rate``, taken whole."""
    return analyse_segments([audio], spec, duration_s=audio.size / spec.sample_rate)


def analyse_segments(segments: list[np.ndarray], spec: AudioSpec, *, duration_s: float) -> Analysis:
    """Tiles and summary features of a track's decoded segments (its whole, or its excerpts: see
    :func:`decode_excerpts`), each mono at ``spec.sample_rate``; the statistics span every segment's frames."""
    joined = np.concatenate(segments).astype(np.float64)
    if float(np.sqrt(np.mean(joined**2))) < spec.silence_rms:
        raise AudioError("analyse", f"silent (RMS below {spec.silence_rms:g})")
    tile_sets, per_frame = [], []
    # an excerpt cut short (a file whose header overstates its length ends early) gives what tiles it can
    long_enough = [s for s in segments if s.size >= spec.tile_frames * spec.hop_length] or segments[:1]
    for segment in long_enough:
        power = power_spectrogram(segment, spec)
        mel_db = log_mel(power, spec)
        tile_sets.append(tiles(mel_db, spec))
        per_frame.append(frame_features(segment, power, mel_db, spec))
    return Analysis(duration_s=duration_s, tiles=np.concatenate(tile_sets), features=summary_of(per_frame))


def analyse_source(source: str | BinaryIO, spec: AudioSpec) -> Analysis:
    """:func:`decode_excerpts` then :func:`analyse_segments`; any failure, of any type, is an
    :class:`AudioError` naming the stage, so that one file can never stop a job."""
    stage = "decode"
    try:
        decoded = decode_excerpts(source, spec)
        stage = "analyse"
        return analyse_segments(decoded.segments, spec, duration_s=decoded.duration_s)
    except AudioError:
        raise
    except Exception as error:  # libraries raise many types on hostile input
        raise AudioError(stage, f"{type(error).__name__}: {' '.join(str(error).split())}") from error
