"""A corpus of full-length songs from real music, and its two-halves view for the same-song check.

    python -m benchmarks.full_length_corpus OUT [dev|wide]     # as root: installs Debian packages and ffmpeg

1. ``OUT/whole``: ``shared/build_music_corpus.py OUT/whole SET --whole`` (the shared corpora's Debian game
   soundtracks, each track kept whole: its audible span, at most 600 s, 44.1 kHz stereo 192 kbit/s MP3, FMA
   layout). Built once; an existing one is reused.
2. ``OUT/halves``: each song cut into its first and second half, MP3 frames copied without re-encoding
   (``ffmpeg -c copy``), in FMA layout: both halves keep the song's source (``genre_top``), "artist" (the song)
   and split, so the shared metrics' same-track check asks whether one half of a song finds the other half among
   its 10 nearest, and the source check whether a half's neighbours come from its source. A half is an id of
   its own: ``song id * 10 + 1`` (first) or ``+ 2`` (second). ``OUT/halves/no_repeats.txt`` is the empty
   a/b-repeats list the metrics take (the halves share no audio span; a looping track repeats itself, and that
   holds at every budget alike).

Prints the number of songs and minutes of each.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared"


def build_whole(out: Path, corpus_set: str) -> Path:
    whole = out / "whole"
    if not (whole / "fma_metadata" / "tracks.csv").exists():
        subprocess.run([sys.executable, str(SHARED / "build_music_corpus.py"), str(whole), corpus_set, "--whole"],
                       check=True)
    return whole


def audio_path(folder: Path, track_id: int) -> Path:
    name = f"{track_id:06d}"
    return folder / "audio" / name[:3] / f"{name}.mp3"


def cut_halves(whole: Path, halves: Path) -> pd.DataFrame:
    """Write both halves of every song of ``whole`` into ``halves`` (FMA layout); returns the halves' table."""
    tracks = pd.read_csv(whole / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1])
    rows = []
    for song_id, song in tracks.iterrows():
        source = audio_path(whole, int(song_id))
        seconds = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                                        "csv=p=0", str(source)], check=True, capture_output=True, text=True).stdout)
        for half, (start, length) in enumerate(((0.0, seconds / 2), (seconds / 2, seconds / 2)), start=1):
            half_id = int(song_id) * 10 + half
            target = audio_path(halves, half_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", f"{start:.3f}", "-t", f"{length:.3f}",
                                "-i", str(source), "-c", "copy", str(target)], check=True)
            row = song.copy()
            row[("track", "duration")] = int(round(length))
            row[("track", "title")] = f"{song[('track', 'title')]} (half {half})"
            rows.append(row.rename(half_id))
    table = pd.DataFrame(rows)
    table.index.name = "track_id"
    (halves / "fma_metadata").mkdir(parents=True, exist_ok=True)
    table.to_csv(halves / "fma_metadata" / "tracks.csv")
    (halves / "no_repeats.txt").write_text("# the halves of a song share no audio span\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("set", nargs="?", default="dev", choices=("dev", "wide"))
    args = parser.parse_args()
    whole = build_whole(args.out, args.set)
    songs = pd.read_csv(whole / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1])
    halves = cut_halves(whole, args.out / "halves")
    print(f"{args.out / 'whole'}: {len(songs)} songs, {songs[('track', 'duration')].sum() / 60:.0f} minutes, "
          f"{songs[('track', 'genre_top')].nunique()} sources")
    print(f"{args.out / 'halves'}: {len(halves)} halves, {halves[('track', 'duration')].sum() / 60:.0f} minutes")


if __name__ == "__main__":
    main()
