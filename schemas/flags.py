"""Command-line flags: a parser whose mistakes are one line naming the closest known flag (exit 2)."""
from __future__ import annotations

import argparse
import difflib
import sys
import math
from typing import Callable, Iterable, NoReturn

VERBOSE_ENV = "WAVELIST_VERBOSE"  # set by ``wavelist -v``: the libraries' own messages too (Beam workers inherit it)


def unknown_flags_message(unknown: Iterable[str], known: Iterable[str]) -> str:
    """``unknown flag --label-csv (did you mean --labels-csv?)`` for each flag-like word of ``unknown``."""
    known = sorted({k for k in known if k.startswith("-")})
    parts = []
    for word in unknown:
        name = word.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        parts.append(f"unknown flag {shown(name)}{hint}" if name.startswith("-") else f"unexpected argument {word!r}")
    return "; ".join(parts)


class FlagParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line, ``PROG: error: ...``, exit 2, and whose unknown
    flags are named with the closest known one."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        empty = empty_value(sys.argv[1:] if args is None else args)
        if empty:
            self.error(empty)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(unknown_flags_message(unknown, self.known_flags()))
        return parsed

    def known_flags(self) -> list[str]:
        return list(self._option_string_actions)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {one_line_message(message)}", file=sys.stderr)
        sys.exit(2)


def one_line_message(message: str) -> str:
    """``message`` as one line a terminal shows as written: white space runs as one space; the bytes of a name
    that is not UTF-8 as ``\\xNN``; control, format and other unprintable characters (escape sequences,
    bidirectional overrides) as Python escapes."""
    message = " ".join(message.split())
    try:
        message = message.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no byte gave
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def empty_value(argv: Iterable[str]) -> str | None:
    """What is wrong with ``--flag=--`` in ``argv``, if it is there: argparse takes that value as the end of the
    flags and hands the flag an empty list instead of an error."""
    for word in argv:
        if word.startswith("--") and word.endswith("=--"):
            return f"argument {shown(word[:-3])}: -- is not a value"
    return None


def shown(text: str, limit: int = 40) -> str:
    """``text`` as a message shows a value the user typed: cut at ``limit`` characters, and quoted with its
    control characters escaped (``repr``) when it has any, so that no text can move the cursor or add a line."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return cut if cut.isprintable() else repr(cut)


def whole(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in decimal digits (one optional sign) from ``low`` to ``high``; any
    other text is an error that the parser shows as one line naming the flag."""
    def parse(text: str) -> int:
        digits = text.strip()[1:] if text.strip()[:1] in ("+", "-") else text.strip()
        if not digits.isdecimal() or len(digits) > 30:
            raise argparse.ArgumentTypeError(f"{shown(text)} is not a whole number{_range(low, high)}")
        value = int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"give a whole number{_range(low, high)}, not {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def real(low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """An argparse ``type``: a finite number (``0.5``, ``1e-3``) from ``low`` to ``high``; anything else
    (``nan``, ``inf``, words) is an error that the parser shows as one line naming the flag."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except (ValueError, OverflowError):
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{shown(text)} is not a finite number{_range(low, high)}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"give a number{_range(low, high)}, not {value:g}")
        return value

    parse.__name__ = "number"
    return parse


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}" if isinstance(low, float) or isinstance(high, float) \
            else f" from {low} to {high}"
    if low is not None:
        return f" of {low:g} or more" if isinstance(low, float) else f" of {low} or more"
    if high is not None:
        return f" of {high:g} or less" if isinstance(high, float) else f" of {high} or less"
    return ""


PORT = whole(0, 65535)
