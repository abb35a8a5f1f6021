"""Decoding full-length songs: CPU per song and the log-mel each decoder gives, against ingest's own decode.

    python -m benchmarks.decoders SONGS [--songs 10] [--extra DIR]

SONGS is a folder of MP3 songs (``audio/**/*.mp3``, e.g. ``benchmarks/full_length_corpus.py``'s ``OUT/whole``).
Rows, each to mono float32 at 22,050 Hz:
- ``soundfile + soxr, whole``: what ingest did before the analysis budget (libsndfile's MP3 decoder, the mean of
  the channels, soxr HQ);
- ``soundfile + soxr, the budget's excerpts``: ``core.audio.decode_excerpts`` at the default budget (seeks);
- ``PyAV``, ``miniaudio``, ``pedalboard``: decoders that resample and downmix as they decode, whole songs, when
  importable (they are not wavelist's dependencies: install them into a folder given as ``--extra``, e.g.
  ``pip install --target DIR av==18.1.0 miniaudio==1.71 pedalboard==0.9.26``).
The log-mel difference: mean |dB| between a decoder's log-mel and the reference's over the first 120 s, after
aligning the two by cross-correlation (a decoder may add a delay) and flooring both 80 dB under the peak.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr

from core.audio import decode_excerpts, log_mel, power_spectrogram, to_mono
from schemas.audio import DEFAULT_AUDIO_SPEC as SPEC

RATE = SPEC.sample_rate


def soundfile_whole(path: str) -> np.ndarray:
    frames, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return soxr.resample(to_mono(frames), rate, RATE, quality="HQ")


def pyav(path: str) -> np.ndarray:
    import av

    out = []
    with av.open(path) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        for frame in container.decode(audio=0):
            out += [o.to_ndarray()[0] for o in resampler.resample(frame)]
        out += [o.to_ndarray()[0] for o in resampler.resample(None)]
    return np.concatenate(out)


def miniaudio_whole(path: str) -> np.ndarray:
    import miniaudio

    decoded = miniaudio.decode_file(path, output_format=miniaudio.SampleFormat.FLOAT32, nchannels=1, sample_rate=RATE)
    return np.frombuffer(decoded.samples, dtype=np.float32)


def pedalboard_whole(path: str) -> np.ndarray:
    from pedalboard.io import AudioFile

    with AudioFile(path).resampled_to(RATE) as audio:
        return audio.read(audio.frames).mean(axis=0).astype(np.float32)


def mel_difference(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean |dB| between the two log-mels over 120 s, ``other`` aligned to ``reference`` first."""
    probe = reference[RATE * 60:RATE * 62]
    window = other[RATE * 60 - 2000:RATE * 62 + 2000]
    lag = int(np.argmax(np.correlate(window, probe, "valid"))) - 2000
    other = other[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, np.float32), other])
    n = min(len(reference), len(other), RATE * 120)
    a, b = (log_mel(power_spectrogram(x[:n], SPEC), SPEC) for x in (reference, other))
    floor = a.max() - 80
    return float(np.mean(np.abs(np.maximum(a, floor) - np.maximum(b, floor))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("songs", type=Path)
    parser.add_argument("--songs", dest="n", type=int, default=10)
    parser.add_argument("--extra", type=Path, help="a folder of extra packages (pip --target) to try")
    args = parser.parse_args()
    if args.extra:
        sys.path.append(str(args.extra))
    paths = [str(p) for p in sorted((args.songs / "audio").rglob("*.mp3"))[: args.n]]
    minutes = sum(soundfile.info(p).duration for p in paths) / 60 / len(paths)
    decoders = {"soundfile + soxr, whole (ingest before the budget)": soundfile_whole,
                "soundfile + soxr, the budget's excerpts (ingest now)": None,
                "PyAV (libswresample)": pyav, "miniaudio (dr_mp3, its resampler)": miniaudio_whole,
                "pedalboard (resampled_to)": pedalboard_whole}
    references = {p: soundfile_whole(p) for p in paths}
    print(f"{len(paths)} songs, {minutes:.1f} min each on average\n")
    print("| decoder | CPU s per song | log-mel mean abs difference (dB) |\n|---|---|---|")
    for name, decode in decoders.items():
        if decode is None:
            started = time.process_time()
            for p in paths:
                decode_excerpts(p, SPEC)
            print(f"| {name} | {(time.process_time() - started) / len(paths):.3f} | excerpts: the same samples (tested) |")
            continue
        try:
            decode(paths[0])  # imports and first-call set-up out of the timing
        except ImportError as error:
            print(f"| {name} | not installed ({error.name}) | |")
            continue
        cpu, differences = 0.0, []
        for p in paths:
            started = time.process_time()
            audio = decode(p)
            cpu += time.process_time() - started
            differences.append(mel_difference(references[p], audio))
        print(f"| {name} | {cpu / len(paths):.3f} | {np.mean(differences):.3f} (max {np.max(differences):.3f}) |")


if __name__ == "__main__":
    main()
