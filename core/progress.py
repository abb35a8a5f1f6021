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


def progress_line(what: str, done: int, total: int | None, elapsed_s: float, unit: str = "tracks") -> str:
    """``ingest: 120 of 500 tracks, 2.1 tracks/s, about 3 min left`` (no total: no time left)."""
    line = f"{what}: {done}" + (f" of {total}" if total else "") + f" {unit}"
    if elapsed_s > 0 and done > 0:
        rate = done / elapsed_s
        line += f", {rate:.1f} {unit}/s"
        if total and done < total:
            line += f", about {duration((total - done) / rate)} left"
    return line


class Progress:
    """Counts units of work and says, at most every ``every_s`` seconds, how far it is (:func:`progress_line`)."""

    def __init__(self, what: str, total: int | None, unit: str = "tracks", every_s: float = 10.0):
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.done = 0
        self._start = self._last = time.monotonic()

    def add(self, count: int = 1) -> str | None:
        """Count ``count`` more; the line to show when it is time for one, else None."""
        self.done += count
        now = time.monotonic()
        if now - self._last < self.every_s:
            return None
        self._last = now
        return progress_line(self.what, self.done, self.total, now - self._start, self.unit)
