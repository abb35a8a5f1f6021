"""A synthetic catalogue in the Free Music Archive's layout, generated deterministically from a seed.

Eight styles that differ in tempo, rhythm, timbre, register and noise; each artist draws its own
parameters around the style's, and each track varies them again, so a style is a family, not a copy.
Written as MP3 with an FMA ``tracks.csv``, so the demo goes through the same reader as real FMA.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import soundfile

from core.catalogue import FMA_TRACKS_CSV, fma_audio_path

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
FMA_SPLITS_BY_ARTIST = ("training",) * 8 + ("validation", "test")  # 80/10/10 with an artist filter


@dataclass(frozen=True)
class Voice:
    """Parameters an artist draws once and each of its tracks jitters."""

    tempo_bpm: float
    root_hz: float
    brightness: float  # 0..1
    noise: float  # 0..1


def _seconds(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _decay(n: int, seconds: float) -> np.ndarray:
    return np.exp(-_seconds(n) / seconds)


def _add(out: np.ndarray, start: int, sound: np.ndarray) -> None:
    end = min(out.size, start + sound.size)
    if start < end:
        out[start:end] += sound[: end - start]


def _band_noise(rng: np.random.Generator, n: int, centre_hz: float, width_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum *= np.exp(-0.5 * ((freqs - centre_hz) / width_hz) ** 2)
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.abs(noise).max() + 1e-9)


def _saw(freq: float | np.ndarray, t: np.ndarray) -> np.ndarray:
    return 2.0 * ((t * freq) % 1.0) - 1.0


def _square(freq: float, t: np.ndarray) -> np.ndarray:
    return np.sign(np.sin(2 * np.pi * freq * t))


def _beats(n: int, bpm: float, per_beat: int = 1) -> np.ndarray:
    step = 60.0 / bpm / per_beat * SAMPLE_RATE
    return (np.arange(0, n, step)).astype(int)


def techno(rng: np.random.Generator, v: Voice, n: int) -> np.ndarray:
    out = np.zeros(n)
    kick_n = int(0.3 * SAMPLE_RATE)
    t = _seconds(kick_n)
    kick = np.sin(2 * np.pi * (45 * t + 100 * 0.04 * (1 - np.exp(-t / 0.04)))) * _decay(kick_n, 0.12)
    hat = np.diff(rng.standard_normal(int(0.05 * SAMPLE_RATE) + 1)) * _decay(int(0.05 * SAMPLE_RATE), 0.01)
    for i, start in enumerate(_beats(n, v.tempo_bpm, 2)):
        _add(out, start, kick if i % 2 == 0 else 0.25 * (0.5 + v.brightness) * hat)
    bass_n = int(60 / v.tempo_bpm / 2 * SAMPLE_RATE)
    bass = _saw(v.root_hz / 4, _seconds(bass_n)) * _decay(bass_n, 0.08)
    for i, start in enumerate(_beats(n, v.tempo_bpm, 2)):
        if i % 2 == 1:
            _add(out, start, 0.4 * bass * (1.5 if i % 8 == 7 else 1.0))
    return out


def ambient(rng: np.random.Generator, v: Voice, n: int) -> np.ndarray:
    t = _seconds(n)
    out = np.zeros(n)
    chord_len = int(rng.uniform(4, 8) * SAMPLE_RATE)
    fade = np.hanning(2 * chord_len)[:chord_len] ** 0.5
    for start in range(0, n, chord_len // 2):
        ratios = rng.choice([1.0, 1.25, 1.5, 2.0, 1.2, 1.875], size=3, replace=False)
        seg = np.zeros(min(chord_len, n - start))
        ts = t[: seg.size]
        for ratio in ratios:
            f = v.root_hz * ratio
            seg += np.sin(2 * np.pi * f * ts + 0.002 * f * np.sin(2 * np.pi * 0.3 * ts))
        _add(out, start, seg * np.concatenate([fade, fade[::-1]])[: seg.size * 2 : 2][: seg.size])
    return out + v.noise * 0.3 * _band_noise(rng, n, 300, 200)


def chiptune(rng: np.random.Generator, v: Voice, n: int) -> np.ndarray:
    out = np.zeros(n)
    step_n = int(60 / v.tempo_bpm / 4 * SAMPLE_RATE)
    ts = _seconds(step_n)
    scale = v.root_hz * 2 ** (np.array([0, 4, 7, 12, 16, 19]) / 12)
    chord_roots = rng.choice([0, 5, 7, 9], size=64)
    for i, start in enumerate(_beats(n, v.tempo_bpm, 4)):
        shift = 2 ** (chord_roots[(i // 16) % 64] / 12)
        lead = _square(scale[i % 3 + (i // 4) % 2] * shift, ts) * _decay(step_n, 0.09)
        _add(out, start, 0.3 * lead)
        if i % 4 == 0:
            _add(out, start, 0.3 * _square(v.root_hz / 2 * shift, ts) * _decay(step_n, 0.2))
    return out


def breakbeat(rng: np.random.Generator, v: Voice, n: int) -> np.ndarray:
    out = np.zeros(n)
    kick_n, snare_n = int(0.2 * SAMPLE_RATE), int(0.18 * SAMPLE_RATE)
    kick = np.sin(2 * np.pi * 60 * _seconds(kick_n)) * _decay(kick_n, 0.07)
    snare = _band_noise(rng, snare_n, 1500 + 2500 * v.brightness, 1200) * _decay(snare_n, 0.05)
    pattern = rng.permutation(["k", "-", "s", "k", "-", "k", "s", "-"] * 2)
    pattern[0], pattern[4] = "k", "s"
    for i, start in enumerate(_beats(n, v.tempo_bpm, 4)):
        hit = pattern[i % 16]
        if hit == "k":
            _add(out, start, kick)
        elif hit == "s" or rng.random() < 0.08:
            _add(out, start, 0.7 * snare)
    return out + v.noise * 0.05 * rng.standard_normal(n)


def bells(rng: np.random.Generator, v: Voice, n: int) -> np.ndarray:
    out = np.zeros(n)
    bell_n = int(1.8 * SAMPLE_RATE)
    t = _seconds(bell_n)
    for start in _beats(n, v.tempo_bpm, 1):
        if rng.random() < 0.55:
            f = v.root_hz * 2 ** (rng.choice([0, 2, 4, 7, 9, 12]) / 12)
            index = 4 * _decay(bell_n, 0.3)
            bell = np.sin(2 * np.pi * f * t + index * np.sin(2 * np.pi * 3.5 * f * t)) * _decay(bell_n, 0.6)
            _add(out, start, 0.5 * bell)
    return out


def drone(rng: np.random.Generator, v: Voice, n: int) -> np.ndarray:
    t = _seconds(n)
    f = v.root_hz / 8
    lfo = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t)
    tone = (_saw(f, t) + 0.6 * _saw(f * 1.5 * 1.003, t)) * lfo
    brown = np.cumsum(rng.standard_normal(n))
    brown = brown - np.convolve(brown, np.ones(2048) / 2048, mode="same")
    return 0.5 * tone + v.noise * 0.5 * brown / (np.abs(brown).max() + 1e-9)


def folk(rng: np.random.Generator, v: Voice, n: int) -> np.ndarray:
    out = np.zeros(n)
    pluck_n = int(1.2 * SAMPLE_RATE)
    t = _seconds(pluck_n)
    scale = np.array([0, 2, 4, 7, 9, 12, 14])
    for i, start in enumerate(_beats(n, v.tempo_bpm, 2)):
        if i % 6 in (1, 3) and rng.random() < 0.5:
            continue  # a 3/4 lilt
        f = v.root_hz * 2 ** (rng.choice(scale) / 12)
        pluck = sum(
            np.sin(2 * np.pi * k * f * t) / k * _decay(pluck_n, 0.5 / k ** (0.5 + v.brightness)) for k in range(1, 9)
        )
        _add(out, start, 0.4 * pluck * (1.3 if i % 6 == 0 else 1.0))
    return out


def noise(rng: np.random.Generator, v: Voice, n: int) -> np.ndarray:
    out = np.zeros(n)
    seg_n = int(rng.uniform(1.5, 4.0) * SAMPLE_RATE)
    window = np.hanning(seg_n)
    for start in range(0, n, seg_n // 2):
        centre = v.root_hz * 4 * rng.uniform(0.5, 2.0)
        _add(out, start, window * _band_noise(rng, seg_n, centre, centre * 0.3))
    crackle = (rng.random(n) < 0.002) * rng.standard_normal(n)
    return out + v.noise * crackle


@dataclass(frozen=True)
class Style:
    genre: str
    render: Callable[[np.random.Generator, Voice, int], np.ndarray]
    tempo_bpm: tuple[float, float]
    root_hz: tuple[float, float]


STYLES: tuple[Style, ...] = (
    Style("Techno", techno, (120, 132), (160, 240)),
    Style("Ambient", ambient, (60, 80), (200, 400)),
    Style("Chiptune", chiptune, (150, 175), (400, 800)),
    Style("Breakbeat", breakbeat, (165, 180), (100, 200)),
    Style("Bells", bells, (80, 100), (800, 1600)),
    Style("Drone", drone, (40, 60), (320, 640)),
    Style("Folk", folk, (90, 110), (150, 300)),
    Style("Noise", noise, (60, 90), (300, 900)),
)


def render_track(style: Style, voice: Voice, seed: int, seconds: float) -> np.ndarray:
    """One clip of ``style`` in ``voice``: mono float32 at ``SAMPLE_RATE``, peak at most 0.9."""
    rng = np.random.default_rng(seed)
    jittered = Voice(
        tempo_bpm=voice.tempo_bpm * rng.uniform(0.97, 1.03),
        root_hz=voice.root_hz * 2 ** (rng.integers(-2, 3) / 12),
        brightness=float(np.clip(voice.brightness + rng.normal(0, 0.1), 0, 1)),
        noise=float(np.clip(voice.noise + rng.normal(0, 0.05), 0, 1)),
    )
    audio = style.render(rng, jittered, int(seconds * SAMPLE_RATE))
    audio = audio / (np.abs(audio).max() + 1e-9) * rng.uniform(0.5, 0.9)
    return audio.astype(np.float32)


def generate(
    out_dir: str | Path,
    *,
    seed: int = 0,
    artists_per_style: int = 10,
    tracks_per_artist: int = 2,
    seconds: float = 30.0,
    styles: tuple[Style, ...] = STYLES,
    progress: bool = True,
) -> Path:
    """Write ``OUT/fma_metadata/tracks.csv`` and ``OUT/fma_small/XXX/XXXXXX.mp3``; return ``OUT``.

    ``artists_per_style`` must be 10 for FMA's 80/10/10 split by artist; fewer puts every artist but the
    last two in training, then one validation and one test artist.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    audio_dir = out_dir / "fma_small"
    (out_dir / "fma_metadata").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_tracks = len(styles) * artists_per_style * tracks_per_artist
    track_ids = np.sort(rng.choice(np.arange(2, 156_000), size=n_tracks, replace=False))
    order = rng.permutation(n_tracks)  # ids are not grouped by style
    records = []
    jobs = []
    slot = 0
    for g, style in enumerate(styles):
        for a in range(artists_per_style):
            artist_id = 1000 + g * 100 + a
            voice = Voice(
                tempo_bpm=rng.uniform(*style.tempo_bpm),
                root_hz=float(np.exp(rng.uniform(*np.log(style.root_hz)))),
                brightness=rng.uniform(0.1, 0.9),
                noise=rng.uniform(0.0, 0.6),
            )
            split = FMA_SPLITS_BY_ARTIST[a] if artists_per_style == 10 else (
                "test" if a == artists_per_style - 1 else "validation" if a == artists_per_style - 2 else "training"
            )
            for k in range(tracks_per_artist):
                track_id = int(track_ids[order[slot]])
                slot += 1
                jobs.append((track_id, style, voice, int(rng.integers(2**31))))
                records.append(
                    {
                        ("album", "title"): f"{style.genre} Album {a}",
                        ("artist", "id"): artist_id,
                        ("artist", "name"): f"{style.genre} Artist {a}",
                        ("set", "split"): split,
                        ("set", "subset"): "small",
                        ("track", "duration"): int(seconds),
                        ("track", "genre_top"): style.genre,
                        ("track", "genres"): f"[{g + 1}]",
                        ("track", "genres_all"): f"[{g + 1}]",
                        ("track", "title"): f"{style.genre} piece {a}.{k}",
                        "track_id": track_id,
                    }
                )
    # one bar that redraws itself on a terminal; in a log (CI, a file), a state every 10 s, as the jobs report
    every_s = 0.1 if sys.stderr.isatty() else 10.0
    for track_id, style, voice, track_seed in tqdm(jobs, desc="demo catalogue", unit="clip", disable=not progress,
                                                   mininterval=every_s):
        path = Path(fma_audio_path(str(audio_dir), track_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, render_track(style, voice, track_seed, seconds), SAMPLE_RATE, format="MP3")
    table = pd.DataFrame.from_records(records).set_index("track_id").sort_index()
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.to_csv(out_dir / "fma_metadata" / FMA_TRACKS_CSV)
    genres = pd.DataFrame(
        {
            "#tracks": [artists_per_style * tracks_per_artist] * len(styles),
            "parent": 0,
            "title": [s.genre for s in styles],
            "top_level": range(1, len(styles) + 1),
        },
        index=pd.Index(range(1, len(styles) + 1), name="genre_id"),
    )
    genres.to_csv(out_dir / "fma_metadata" / "genres.csv")
    log.info("demo catalogue: %d clips of %.0f s in %d styles under %s", n_tracks, seconds, len(styles), out_dir)
    return out_dir
