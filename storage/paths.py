"""Paths local or remote (gs://) and the same calls for both: join, exists, listing, read and write bytes, text
and JSON, delete. Part of :mod:`storage.files`, which callers import.

Local paths use the standard library alone; remote paths go through Beam's ``FileSystems``, imported on first
use, so local use (the playlists, the server) never imports Beam.
"""
from __future__ import annotations

import io
import json
import os
import posixpath
import shutil
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator

from schemas.errors import UserError

if TYPE_CHECKING:
    from apache_beam.io.filesystems import FileSystems


def _remote(path: str | Path | None = None) -> type[FileSystems]:
    """Beam's ``FileSystems`` (gs:// and any other scheme Beam knows), imported when a remote path is used; a
    ``path`` whose scheme no filesystem here knows (``x://``) is a :class:`UserError` naming it."""
    from apache_beam.io.filesystems import FileSystems

    if path is not None:
        try:
            FileSystems.get_filesystem(str(path))
        except ValueError:
            scheme, named = str(path).split("://", 1)[0], str(path).split("*", 1)[0].rstrip("/")  # not a pattern's glob
            raise UserError(f"{named}: no filesystem here reads {scheme}:// paths; give a local path or gs://") \
                from None
    return FileSystems


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def join(folder: str | Path, *names: str) -> str:
    """Path join that keeps gs:// URLs intact."""
    folder = str(folder)
    return posixpath.join(folder, *names) if is_remote(folder) else os.path.join(folder, *names)


def exists(path: str | Path) -> bool:
    """Whether the file (or local folder) ``path`` exists."""
    return _remote(path).exists(str(path)) if is_remote(path) else os.path.exists(path)


def is_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder: a local directory, or a remote prefix that holds at least one object."""
    if not is_remote(path):
        return Path(path).is_dir()
    return bool(_match(str(path).rstrip("/") + "/**"))


def _match(pattern: str) -> list[str]:
    """The remote paths that ``pattern`` matches."""
    return [m.path for m in _remote(pattern).match([pattern])[0].metadata_list]


def listing(folder: str | Path) -> list[str]:
    """Every file under ``folder``, as sorted paths relative to it ('/'-separated)."""
    prefix = str(folder).rstrip("/") + "/"
    if is_remote(folder):
        return sorted(path[len(prefix):] for path in _match(prefix + "**"))
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def read_bytes(path: str | Path) -> bytes:
    """The whole file at ``path``."""
    if not is_remote(path):
        return Path(path).read_bytes()
    with _remote(path).open(str(path), compression_type="uncompressed") as handle:
        return handle.read()


def open_binary(path: str | Path) -> IO[bytes]:
    """A seekable binary handle on the file ``path`` (local or remote), for reading."""
    if not is_remote(path):
        return open(path, "rb")
    return _remote(path).open(str(path), compression_type="uncompressed")


def file_stat(path: str | Path) -> tuple[int, int]:
    """``(size in bytes, modification time in ns)`` of the file ``path`` (links followed; a remote object's
    time has the store's resolution)."""
    if not is_remote(path):
        found = os.stat(path)
        return found.st_size, found.st_mtime_ns
    metadata = _remote(path).match([str(path)])[0].metadata_list[0]
    return metadata.size_in_bytes, int(round((metadata.last_updated_in_seconds or 0) * 1e9))


def write_bytes(path: str | Path, data: bytes) -> str:
    """Write ``data`` as the file ``path`` (a local file's folders are made); returns ``path``."""
    if is_remote(path):
        with _remote(path).create(str(path), compression_type="uncompressed") as handle:
            handle.write(data)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return str(path)


def write_text(path: str | Path, text: str) -> str:
    return write_bytes(path, text.encode("utf-8"))


def write_lines(path: str | Path, lines: Iterable[str]) -> str:
    return write_text(path, "".join(line + "\n" for line in lines))


def open_text(path: str | Path) -> IO[str]:
    """A text handle on ``path``; raises ``FileNotFoundError`` naming it."""
    if not exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    # newline="": the csv module and pandas see line ends inside quoted fields as written
    if not is_remote(path):
        return open(path, encoding="utf-8", newline="")
    return io.TextIOWrapper(_remote(path).open(str(path), compression_type="uncompressed"), encoding="utf-8", newline="")


def open_bytes(path: str | Path) -> IO[bytes]:
    """A binary handle on the file ``path``; a missing file or a folder raises ``OSError`` naming it."""
    if not is_remote(path):
        if Path(path).is_dir():
            raise IsADirectoryError(f"{path} is a folder, not a file")
        return open(path, "rb")
    if not exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    return _remote(path).open(str(path), compression_type="uncompressed")


def read_json(path: str | Path, *, made_by: str = "the job that wrote it") -> Any:
    """The JSON document at ``path``; a missing or corrupt file names itself."""
    if not exists(path):
        raise FileNotFoundError(f"{path} is missing; is it an output of {made_by}?")
    try:
        return json.loads(read_bytes(path))
    except ValueError as error:
        raise UserError(f"{path} is not valid JSON ({error}); rerun {made_by}") from None


def remove(folder: str | Path) -> None:
    """Delete ``folder`` and everything under it (nothing when it does not exist)."""
    if is_remote(folder):
        _remote(folder).delete([str(folder).rstrip("/") + "/"])
    else:
        shutil.rmtree(folder, ignore_errors=True)


# ---- The Beam jobs' own files (issue 33a): the paths they hand to workers, patterns, single files, TFRecords ----

def absolute(path: str | Path) -> str:
    """``path`` as a worker in another folder must see it: a remote path as it is, a local one absolute (links
    resolved)."""
    return str(path) if is_remote(path) else str(Path(path).resolve())


def match_files(pattern: str) -> list[str]:
    """The files that the glob ``pattern`` matches, sorted, local or remote, by Beam's rules (``**`` crosses
    folders); imports Beam."""
    return sorted(m.path for m in _remote(pattern).match([str(pattern)])[0].metadata_list)


def delete_file(path: str | Path) -> bool:
    """Delete the file ``path`` if it exists (local or remote); whether it did."""
    if not exists(path):
        return False
    if is_remote(path):
        _remote(path).delete([str(path)])
    else:
        os.remove(path)
    return True


def _masked_crc32c(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path: str | Path, compression: str = "uncompressed") -> Iterator[bytes]:
    """The records of the TFRecord file ``path`` (``compression``: ``uncompressed`` or ``gzip``), each length and
    payload checked against its CRC; a cut or damaged file raises ``ValueError`` (or the decompressor's error)."""
    import gzip
    import struct

    if is_remote(path):
        handle = _remote(path).open(str(path), compression_type=compression)
    else:
        handle = gzip.open(path, "rb") if compression == "gzip" else open(path, "rb")
    with handle:
        while header := handle.read(12):
            if len(header) < 12:
                raise ValueError(f"a record header cut after {len(header)} of 12 bytes")
            length, length_crc = struct.unpack("<QI", header)
            if _masked_crc32c(header[:8]) != length_crc:
                raise ValueError("a record length fails its CRC")
            body = handle.read(length + 4)
            if len(body) < length + 4:
                raise ValueError(f"a record cut after {len(body)} of {length + 4} bytes")
            if _masked_crc32c(body[:length]) != struct.unpack("<I", body[length:])[0]:
                raise ValueError("a record fails its CRC")
            yield body[:length]
