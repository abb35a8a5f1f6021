"""Command-line flags: a parser whose mistakes are one line naming the closest known flag (exit 2)."""
from __future__ import annotations

import argparse
import difflib
import sys
from typing import Iterable, NoReturn

VERBOSE_ENV = "WAVELIST_VERBOSE"  # set by ``wavelist -v``: the libraries' own messages too (Beam workers inherit it)


def unknown_flags_message(unknown: Iterable[str], known: Iterable[str]) -> str:
    """``unknown flag --label-csv (did you mean --labels-csv?)`` for each flag-like word of ``unknown``."""
    known = sorted({k for k in known if k.startswith("-")})
    parts = []
    for word in unknown:
        name = word.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        parts.append(f"unknown flag {name}{hint}" if name.startswith("-") else f"unexpected argument {word!r}")
    return "; ".join(parts)


class FlagParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line, ``PROG: error: ...``, exit 2, and whose unknown
    flags are named with the closest known one."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(unknown_flags_message(unknown, self.known_flags()))
        return parsed

    def known_flags(self) -> list[str]:
        return list(self._option_string_actions)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)
