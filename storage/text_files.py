"""Text files a user gives wavelist (listening histories, labels CSVs, playlists and track lists), read in bounded
memory whatever their size or content: the encoding found from the byte-order mark (:data:`ENCODING_RULE`), then
lines cut at :data:`MAX_LINE_CHARS`, or the items of a JSON array one at a time."""
from __future__ import annotations

import codecs
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from schemas.errors import UserError
from storage import files

MAX_LINE_CHARS = 1 << 20  # a longer line (or JSON item) is not read whole
CHUNK_CHARS = 1 << 16
ENCODING_RULE = ("UTF-8 with or without a byte-order mark, or UTF-16 or UTF-32 with one; in a file without a "
                 "byte-order mark, a byte that is not part of valid UTF-8 is read as Windows-1252 (Latin-1)")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32 LE first: it starts like UTF-16 LE
_CP1252_UNDEFINED = {0x81, 0x8D, 0x8F, 0x90, 0x9D}
_SPACE = re.compile(r"[ \t\r\n]*")


def _as_windows_1252(error: UnicodeError) -> tuple[str, int]:
    """Decode-error handler: the bytes that are not UTF-8 as Windows-1252 (its five undefined bytes as Latin-1)."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start:error.end]
    return "".join(chr(b) if b in _CP1252_UNDEFINED else bytes([b]).decode("cp1252") for b in bad), error.end


codecs.register_error("wavelist-windows-1252", _as_windows_1252)


def wrap_bytes(raw: IO[bytes]) -> IO[str]:
    """A text handle on the binary handle ``raw`` decoded as :data:`ENCODING_RULE` says (its BOM not read as text);
    line ends are kept as written (``newline=""``, which the csv module needs)."""
    buffered = raw if isinstance(raw, io.BufferedIOBase) and hasattr(raw, "peek") else io.BufferedReader(raw)
    head = buffered.peek(4)[:4]
    encoding = next((name for bom, name in _BOMS if head.startswith(bom)), None)
    if encoding in ("utf-16", "utf-32"):
        return io.TextIOWrapper(buffered, encoding=encoding, errors="replace", newline="")
    return io.TextIOWrapper(buffered, encoding=encoding or "utf-8", errors="wavelist-windows-1252", newline="")


def open_text(path: str | Path) -> IO[str]:
    """``path`` (local or gs://) as text, decoded as :data:`ENCODING_RULE` says; a missing file, a folder or an
    unreadable one raises ``OSError`` naming it."""
    return wrap_bytes(files.open_bytes(path))


class UserText:
    """One text file, or a string, read forwards once in bounded memory: look at its first character
    (:meth:`first`), then read it as lines (:meth:`lines`) or as a JSON array (:meth:`json_items`)."""

    def __init__(self, handle: IO[str], source: str, limit: int = MAX_LINE_CHARS):
        self.handle, self.source, self.limit = handle, source, limit
        self._pending: list[str] = []  # a line read ahead by first(), given back before the rest
        self._blank = 0  # blank lines before it
        self.line = 0  # the number of the last line that lines() gave
        self._items: Iterator[tuple[int, Any]] | None = None  # the JSON list's items, once started
        self._peeked: list[tuple[int, Any]] = []

    @classmethod
    def of(cls, text: str, source: str) -> UserText:
        return cls(io.StringIO(text, newline=""), source)

    def _readline(self) -> str:
        """The next line with its end, cut after ``limit + 1`` characters."""
        return self._pending.pop() if self._pending else self.handle.readline(self.limit + 1)

    def first(self) -> str:
        """The first character that is not white space (``""`` for a blank file); nothing but blank lines is
        consumed."""
        while not self._pending:
            line = self.handle.readline(self.limit + 1)
            if not line:
                return ""
            if line.strip():
                self._pending.append(line)
            else:
                self._blank += 1
        return self._pending[0].lstrip()[0]

    def peek(self) -> str:
        """The first line that is not blank (cut after ``limit + 1`` characters), not consumed; call :meth:`first`
        before."""
        return self._pending[0] if self._pending else ""

    def lines(self, too_long: Callable[[int], None]) -> Iterator[str]:
        """Every line with its end (:attr:`line` is its number); a line longer than ``limit`` characters is read
        to its end unkept, reported to ``too_long(number)`` (which may raise) and given as an empty line, so that
        line numbers stay right."""
        self.line = self._blank
        while True:
            line = self._readline()
            if not line:
                return
            self.line += 1
            if len(line) > self.limit and not line.endswith(("\n", "\r")):
                while line and not line.endswith(("\n", "\r")):
                    line = self._readline()
                too_long(self.line)
                line = "\n"
            yield line

    def _read(self, size: int) -> str:
        return self._pending.pop() if self._pending else self.handle.read(size)

    def json_items(self) -> Iterator[tuple[int, Any]]:
        """The items of the JSON array that the text is, as :meth:`_json_items` reads them (a peeked one too)."""
        if self._items is None:
            self._items = self._json_items()
        while self._peeked:
            yield self._peeked.pop()
        yield from self._items

    def peek_item(self) -> tuple[int, Any] | None:
        """The first item of the JSON array (:meth:`json_items`) and its line, not consumed; None for ``[]``."""
        if not self._peeked:
            if self._items is None:
                self._items = self._json_items()
            item = next(self._items, None)
            if item is None:
                return None
            self._peeked.append(item)
        return self._peeked[0]

    def _json_items(self) -> Iterator[tuple[int, Any]]:
        """The items of the JSON array that the text is, each with the line it starts on, one at a time; text that
        is not a JSON array, or an item longer than ``limit`` characters, raises :class:`UserError` naming the line."""
        decoder = json.JSONDecoder()
        buffer, at, eof = "", 0, False
        line, mark = self._blank + 1, 0  # the line that buffer[mark] is on

        def line_at(pos: int) -> int:
            nonlocal line, mark
            if pos >= mark:
                line, mark = line + buffer.count("\n", mark, pos), pos
                return line
            return line - buffer.count("\n", pos, mark)

        def fill() -> bool:
            nonlocal buffer, at, mark, eof
            chunk = "" if eof else self._read(CHUNK_CHARS)
            if not chunk:
                eof = True
                return False
            line_at(at)
            buffer, at, mark = buffer[at:] + chunk, 0, 0
            return True

        def skip_space() -> None:
            nonlocal at
            while True:
                at = _SPACE.match(buffer, at).end()
                if at < len(buffer) or not fill():
                    return

        def fail(pos: int, why: str) -> UserError:
            return UserError(f"{self.source} line {line_at(pos)}: {why}")

        skip_space()
        if buffer[at:at + 1] != "[":
            raise fail(at, "not a JSON list")
        at += 1
        first = True
        while True:
            skip_space()
            if at >= len(buffer):
                raise fail(at, "the JSON list does not end (no ])")
            if buffer[at] == "]" and first:
                at += 1
                break
            if not first:
                if buffer[at] == "]":
                    at += 1
                    break
                if buffer[at] != ",":
                    raise fail(at, "not JSON: expected , or ] between list items")
                at += 1
                skip_space()
            first = False
            start, problem = at, None
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, start)
                    if end < len(buffer) or eof:  # something follows: the item is whole
                        break
                except json.JSONDecodeError as error:
                    problem = f"not JSON ({error.msg})"
                    if eof:
                        raise fail(error.pos, problem) from None
                except RecursionError:
                    raise fail(start, "not usable JSON (nested too deeply)") from None
                except ValueError:  # an integer of over 4,300 digits
                    raise fail(start, "not usable JSON (a number too long)") from None
                if len(buffer) - start > self.limit:
                    raise fail(start, problem or f"a list item longer than {self.limit:,} characters")
                fill()
                start = at
            yield line_at(start), value
            at = end
        skip_space()
        if at < len(buffer):
            raise fail(at, "text after the end of the JSON list")
