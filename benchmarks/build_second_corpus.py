"""A second real-music corpus for quality checks, from Debian packages the dev corpus does not use.

    sudo python -m benchmarks.build_second_corpus OUT [--jobs 2]

The model was never tuned on these sources, so ``python -m benchmarks.quality OUT WORKDIR --ab-repeats benchmarks/second_ab_repeats.txt``
on it checks whether the dev corpus's results hold on other music. It runs ``shared/build_music_corpus.py``
(same clips, FMA layout, licences) with this module's package set; ids start at 900001, disjoint from the
dev set's. Packages without music files (frozen-bubble-data, 7kaa-data) are dropped by the builder and
listed here only so that the set is the one that was run.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
SECOND_SET = ["warzone2100-music", "extremetuxracer-data", "lincity-ng-data", "pingus-data",
              "frozen-bubble-data", "hedgewars-data", "xmoto-data", "7kaa-data"]
FIRST_ID = 900001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="other options go to shared/build_music_corpus.py (e.g. --jobs 2)")
    parser.add_argument("out", help="the corpus folder to write")
    _, rest = parser.parse_known_args()
    script = SHARED / "build_music_corpus.py"
    if not script.is_file():
        print(f"build_second_corpus: {script} not found (the shared corpus builder, beside the repository)",
              file=sys.stderr)
        sys.exit(2)
    spec = importlib.util.spec_from_file_location("build_music_corpus", script)
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    builder.SETS["second"] = SECOND_SET
    builder.FIRST_ID["second"] = FIRST_ID
    sys.argv = [sys.argv[0], *sys.argv[1:2], "second", *sys.argv[2:]]  # OUT, the set, then options
    builder.main()


if __name__ == "__main__":
    main()
