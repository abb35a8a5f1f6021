"""The a/b clip pairs of a corpus whose two excerpts share audio (a looped track), to leave out of same-track
queries: a repeat is found by matching, not by hearing alike.

    python -m benchmarks.ab_repeats CORPUS SET_NAME > REPEATS.txt

The rule of ``shared/dev_ab_repeats.txt`` (this script reproduces that list from the dev corpus exactly): the
maximum normalised cross-correlation of the two clips' waveforms (4 kHz mono) over lags with at least 10 s of
overlap is 0.8 or more. CORPUS is what ``shared/build_music_corpus.py`` writes (its ``manifest.csv`` names each
clip's track and a/b excerpt). Pairs under the threshold are printed as comments.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import scipy.signal

from core.audio import to_mono

RATE, MIN_OVERLAP_S, THRESHOLD = 4000, 10.0, 0.8


def load(corpus: Path, clip_id: int) -> np.ndarray:
    """The clip as mono float32 at ``RATE``, downmixed as ingest does (opposite-phase stereo is not silence)."""
    name = f"{clip_id:06d}"
    samples, rate = librosa.load(corpus / "audio" / name[:3] / f"{name}.mp3", sr=None, mono=False)
    return librosa.resample(to_mono(np.atleast_2d(samples).T.copy()), orig_sr=rate, target_sr=RATE)


def best_match(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(correlation, lag in s, overlap in s) at the lag where ``a[n + lag]`` and ``b[n]`` correlate most,
    normalised by the two signals' energies over their overlap; lags with under 10 s of overlap are skipped."""
    products = scipy.signal.correlate(a, b, mode="full", method="fft")
    lags = np.arange(-(len(b) - 1), len(a))
    energy_a, energy_b = (np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)]) for x in (a, b))
    a_start, a_end = np.maximum(lags, 0), np.minimum(len(a), lags + len(b))
    b_start, b_end = a_start - lags, a_end - lags
    overlap = (a_end - a_start) / RATE
    norm = np.sqrt(np.maximum((energy_a[a_end] - energy_a[a_start]) * (energy_b[b_end] - energy_b[b_start]), 1e-20))
    correlation = np.where(overlap >= MIN_OVERLAP_S, products / norm, -1.0)
    best = int(correlation.argmax())
    return float(correlation[best]), lags[best] / RATE, float(overlap[best])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("corpus", type=Path, help="a corpus of shared/build_music_corpus.py (with manifest.csv)")
    parser.add_argument("set_name", help="the name printed in each line's set column")
    args = parser.parse_args()
    corpus, set_name = args.corpus, args.set_name
    manifest = pd.read_csv(corpus / "manifest.csv")
    print(f"# a/b clip pairs of the same track that share audio: max normalised waveform cross-correlation "
          f"({RATE // 1000} kHz mono) >= {THRESHOLD} over >= {MIN_OVERLAP_S:.0f} s overlap")
    print("# r set clip_a clip_b best_lag overlap track_key")
    for key, clips in manifest.groupby("track_key"):
        if len(clips) < 2:
            continue
        a, b = clips.sort_values("clip")["clip_id"].tolist()[:2]
        r, lag, overlap = best_match(load(corpus, a), load(corpus, b))
        print(f"{'' if r >= THRESHOLD else '#'} {r:.2f} {set_name} {a} {b} lag {lag:6.1f}s overlap {overlap:.1f}s {key}",
              flush=True)


if __name__ == "__main__":
    main()
