"""Progress lines with counts, total, pace and time left. Pure code: no Beam, no TensorFlow."""
from __future__ import annotations

import time


def duration(seconds: float) -> str:
    """``45 s``, ``3 min``, ``1 h 05 min``."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _rate(rate: float) -> str:
    """``2.1``; two significant digits below 1 (``0.042``), so a slow pace never reads as ``0.0``."""
    return f"{rate:.1f}" if rate >= 0.95 else f"{rate:.2g}"


def progress_line(what: str, done: int, total: int | None, elapsed_s: float | None, unit: str = "tracks", *,
                  rate: float | None = None) -> str:
    """``ingest: 120 of 500 tracks, 2.1 tracks/s, about 3 min left``: the pace is ``rate`` (units a second), else
    ``done / elapsed_s``; without a pace (``rate`` and ``elapsed_s`` None, or nothing done) no estimate at all;
    without a total no time left."""
    line = f"{what}: {done}" + (f" of {total}" if total else "") + f" {unit}"
    if rate is None and elapsed_s and done > 0:
        rate = done / elapsed_s
    if rate:
        line += f", {_rate(rate)} {unit}/s"
        if total and done < total:
            line += f", about {duration(max(1.0, (total - done) / rate))} left"  # never "about 0 s"
    return line


class Progress:
    """Counts units of work and says, at most every ``every_s`` seconds, how far it is (:func:`progress_line`).

    The pace is measured from the first :meth:`add` on, not from the start: a worker may wait long for its first
    input (imports, a model to load, the stage before it), and that wait says nothing about its pace. Until a
    second ``add`` has been counted after some time, a line has the count only."""

    def __init__(self, what: str, total: int | None, unit: str = "tracks", every_s: float = 10.0):
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.done = 0
        self._first: tuple[float, int] | None = None  # (when, count) of the first add
        self._last = time.monotonic()

    def rate(self, now: float | None = None) -> float | None:
        """Units a second since the first :meth:`add`; None while unknown."""
        if self._first is None:
            return None
        now = time.monotonic() if now is None else now
        since, counted = now - self._first[0], self.done - self._first[1]
        return counted / since if since > 0 and counted > 0 else None

    def add(self, count: int = 1) -> str | None:
        """Count ``count`` more; the line to show when it is time for one, else None."""
        now = time.monotonic()
        self.done += count
        if self._first is None:
            self._first = (now, self.done)
        if now - self._last < self.every_s:
            return None
        self._last = now
        return progress_line(self.what, self.done, self.total, None, self.unit, rate=self.rate(now))
