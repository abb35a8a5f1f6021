"""Every file wavelist reads or writes, local or remote (gs://), through the same calls: bytes, text, JSON,
Parquet tables, the saved ``AudioSpec`` and ``ModelInfo``, local copies of remote folders, and outputs that
appear only when complete (:func:`staged_output`).

Local paths use the standard library alone; remote paths go through Beam's ``FileSystems``, imported on first
use, so local use (the playlists, the server) never imports Beam.
"""
from __future__ import annotations

import glob
import io
import itertools
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import unicodedata
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator

from schemas import layout
from schemas.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    from schemas.audio import AudioSpec
    from schemas.model_info import ModelInfo

log = logging.getLogger(__name__)
SUCCESS_MARKER = layout.SUCCESS_MARKER  # written last: see publish()
SHARD_SUFFIX = ".parquet"  # a table folder's shards: part-SSSSS-of-NNNNN.parquet


class UnreadableTable(UserError):
    """A Parquet table that is missing, cannot be read or does not match its schema."""


class OutputExists(FileExistsError):
    """An output folder exists and ``--overwrite`` was not given."""


def _remote() -> type[FileSystems]:
    """Beam's ``FileSystems`` (gs:// and any other scheme Beam knows), imported when a remote path is used."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def join(folder: str | Path, *names: str) -> str:
    """Path join that keeps gs:// URLs intact."""
    folder = str(folder)
    return posixpath.join(folder, *names) if is_remote(folder) else os.path.join(folder, *names)


def exists(path: str | Path) -> bool:
    """Whether the file (or local folder) ``path`` exists."""
    return _remote().exists(str(path)) if is_remote(path) else os.path.exists(path)


def is_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder: a local directory, or a remote prefix that holds at least one object."""
    if not is_remote(path):
        return Path(path).is_dir()
    return bool(_match(str(path).rstrip("/") + "/**"))


def _match(pattern: str) -> list[str]:
    """The remote paths that ``pattern`` matches."""
    return [m.path for m in _remote().match([pattern])[0].metadata_list]


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
    with _remote().open(str(path), compression_type="uncompressed") as handle:
        return handle.read()


def open_binary(path: str | Path) -> IO[bytes]:
    """A seekable binary handle on the file ``path`` (local or remote), for reading."""
    if not is_remote(path):
        return open(path, "rb")
    return _remote().open(str(path), compression_type="uncompressed")


def file_stat(path: str | Path) -> tuple[int, int]:
    """``(size in bytes, modification time in ns)`` of the file ``path`` (links followed; a remote object's
    time has the store's resolution)."""
    if not is_remote(path):
        found = os.stat(path)
        return found.st_size, found.st_mtime_ns
    metadata = _remote().match([str(path)])[0].metadata_list[0]
    return metadata.size_in_bytes, int(round((metadata.last_updated_in_seconds or 0) * 1e9))


def write_bytes(path: str | Path, data: bytes) -> str:
    """Write ``data`` as the file ``path`` (a local file's folders are made); returns ``path``."""
    if is_remote(path):
        with _remote().create(str(path), compression_type="uncompressed") as handle:
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
    return io.TextIOWrapper(_remote().open(str(path), compression_type="uncompressed"), encoding="utf-8", newline="")


def open_bytes(path: str | Path) -> IO[bytes]:
    """A binary handle on the file ``path``; a missing file or a folder raises ``OSError`` naming it."""
    if not is_remote(path):
        if Path(path).is_dir():
            raise IsADirectoryError(f"{path} is a folder, not a file")
        return open(path, "rb")
    if not exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    return _remote().open(str(path), compression_type="uncompressed")


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
        _remote().delete([str(folder).rstrip("/") + "/"])
    else:
        shutil.rmtree(folder, ignore_errors=True)


def table_files(path: str | Path) -> list[str]:
    """The Parquet files of the table at ``path``: the file itself, or the shards of a folder (``*.parquet``
    inside it, as the embed job writes them), sorted; ``[]`` when there is neither."""
    path = str(path)
    if is_remote(path):
        if _remote().exists(path):
            return [path]
        return sorted(_match(posixpath.join(path, "*" + SHARD_SUFFIX)))
    if os.path.isfile(path):
        return [path]
    return sorted(glob.glob(os.path.join(glob.escape(path), "*" + SHARD_SUFFIX)))


def _parquet_error(file: str, error: Exception, made_by: str) -> UnreadableTable:
    reason = " ".join(str(error).split())
    return UnreadableTable(f"{file} is not a readable Parquet file ({reason}); rerun {made_by}")


def read_parquet(path: str | Path, columns: list[str] | None = None, *, schema: pa.Schema | None = None,
                 made_by: str = "the job that wrote it") -> pa.Table:
    """The table at ``path`` (a Parquet file or a folder of shards, :func:`table_files`), every page checksum
    verified (flipped bytes are an error, not data) and, with ``schema``, each file's columns checked against
    it. Any problem raises :class:`UnreadableTable` naming the file and ``made_by``, the command to rerun."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.tables import require_columns

    files = table_files(path)
    if not files:
        raise UnreadableTable(f"{path} is missing; rerun {made_by}")
    parts = []
    for file in files:
        try:
            source = file if not is_remote(file) else io.BytesIO(read_bytes(file))
            parts.append(pq.read_table(source, columns=columns, page_checksum_verification=True))
        except (pa.ArrowException, OSError) as error:
            raise _parquet_error(file, error, made_by) from error
        if schema is not None:
            try:
                require_columns(parts[-1].schema, pa.schema([schema.field(c) for c in (columns or schema.names)]),
                                what=file)
            except UserError as error:
                raise UnreadableTable(str(error)) from None
    try:
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    except pa.ArrowInvalid as error:
        raise UnreadableTable(f"the shards of {path} do not share one schema ({error}); rerun {made_by}") from None


def _parquet_footer(file: str, made_by: str) -> pq.FileMetaData:
    """The ``pq.FileMetaData`` of one Parquet file, read from its footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if not is_remote(file):
            return pq.read_metadata(file)
        with _remote().open(file, compression_type="uncompressed") as handle:
            return pq.ParquetFile(handle).metadata
    except (pa.ArrowException, OSError) as error:
        raise _parquet_error(file, error, made_by) from error


def parquet_schemas(path: str | Path, *, made_by: str = "the job that wrote it") -> list[tuple[str, pa.Schema]]:
    """``(file, schema)`` of each file of the table at ``path``, from the footers (no data read)."""
    return [(file, _parquet_footer(file, made_by).schema.to_arrow_schema()) for file in table_files(path)]


def parquet_num_rows(path: str | Path, *, made_by: str = "the job that wrote it") -> int:
    """Rows of the table at ``path`` (a file or a folder of shards), from the footers."""
    files = table_files(path)
    if not files:
        raise FileNotFoundError(f"{path} does not exist")
    return sum(_parquet_footer(file, made_by).num_rows for file in files)


def load_audio_spec(folder: str | Path, *, made_by: str = "wavelist ingest or train") -> AudioSpec:
    """The ``AudioSpec`` that ``made_by`` saved in ``folder`` (:func:`save_audio_spec`)."""
    from schemas.audio import AudioSpec

    path = join(folder, layout.AUDIO_SPEC)
    record = read_json(path, made_by=made_by)
    try:
        return AudioSpec.from_dict(record)
    except (UserError, TypeError) as error:
        raise UserError(f"{path}: {error}; rerun {made_by}") from None


def save_audio_spec(folder: str | Path, spec: AudioSpec) -> str:
    """Save ``spec`` as ``folder/audio_spec.json``; returns its path."""
    return write_text(join(folder, layout.AUDIO_SPEC), spec.to_json() + "\n")


def load_model_info(folder: str | Path) -> ModelInfo:
    """The :class:`~schemas.model_info.ModelInfo` of a MODEL folder."""
    from schemas.model_info import ModelInfo, ModelInfoError

    path = join(folder, layout.ModelFiles.INFO)
    if not exists(path):
        raise FileNotFoundError(f"{path} is missing; is {folder} an output of wavelist train?")
    try:
        return ModelInfo.from_json(read_bytes(path), source=path)
    except ModelInfoError as error:
        raise UserError(str(error)) from None


def _copy_down(folder: str, target: str) -> str:
    """Copy every file under the remote ``folder`` into the local folder ``target``; returns ``target``."""
    for name in listing(folder):
        local = Path(target, *name.split("/"))
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(read_bytes(join(folder, name)))
    return target


_LOCAL_COPIES: dict[str, str] = {}


def local_folder(folder: str) -> str:
    """``folder`` itself when local; a remote folder is copied once per process into a temporary folder."""
    if not is_remote(folder):
        return folder
    if folder not in _LOCAL_COPIES:
        _LOCAL_COPIES[folder] = _copy_down(folder, tempfile.mkdtemp(prefix="wavelist-"))
    return _LOCAL_COPIES[folder]


@contextmanager
def read_locally(folder: str) -> Iterator[str]:
    """``folder`` itself when local; a remote folder copied into a local temporary folder for the block, then
    deleted (Keras and tf.data read local files)."""
    if not is_remote(folder):
        yield folder
        return
    local = tempfile.mkdtemp(prefix="wavelist-")
    try:
        yield _copy_down(folder, local)
    finally:
        shutil.rmtree(local, ignore_errors=True)


@contextmanager
def written_locally(folder: str) -> Iterator[str]:
    """``folder`` itself when local; for a remote folder, a local temporary folder whose files are uploaded
    into ``folder`` when the block succeeds (Keras and TensorBoard write local files), then deleted."""
    if not is_remote(folder):
        yield folder
        return
    local = tempfile.mkdtemp(prefix="wavelist-")
    try:
        yield local
        for name in listing(local):
            write_bytes(join(folder, *name.split("/")), Path(local, name).read_bytes())
    finally:
        shutil.rmtree(local, ignore_errors=True)


MAX_NAME_BYTES = 100  # a file name made from text in the tables, in UTF-8 bytes with its suffix (filesystems: 255)
_NAME_UNSAFE = re.compile(r'[/\\:*?"<>|]')  # separators, and what Windows and SMB shares refuse


def safe_file_names(stems: Iterable[str], suffix: str = "", *, max_bytes: int = MAX_NAME_BYTES) -> list[str]:
    """One file name per stem (text from tables: titles, cluster names), each ``stem + suffix``, made safe to
    write into a folder: no path separators, control or format characters (bidirectional overrides), no
    leading dots or spaces; at most ``max_bytes`` of UTF-8, cut on a character boundary; unique ignoring case
    (a repeat gets ``-2``, ``-3``, ...)."""
    names: list[str] = []
    seen: set[str] = set()
    for stem in stems:
        clean = "".join("-" if unicodedata.category(c)[0] in "CZ" and c != " " else c
                        for c in _NAME_UNSAFE.sub("-", stem))
        clean = clean.lstrip(". -").rstrip(". ") or "untitled"
        for number in itertools.count(1):
            tail = (f"-{number}" if number > 1 else "") + suffix
            budget = max(1, max_bytes - len(tail.encode("utf-8")))
            name = clean.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(". ") + tail
            if name.casefold() not in seen:
                break
        seen.add(name.casefold())
        names.append(name)
    return names


# Outputs: a command writes into a staging folder and publishes it, with a _SUCCESS marker written last.

def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """What the ``_SUCCESS`` marker of ``folder`` says: ``{"kind": "ingest", "files": [...]}``; ``{}`` for a
    marker of an older wavelist (empty); ``None`` when there is no marker."""
    path = join(folder, SUCCESS_MARKER)
    if not exists(path):
        return None
    text = read_bytes(path).decode("utf-8", "replace").strip()
    try:
        marker = json.loads(text) if text else {}
    except ValueError:
        return {}
    return marker if isinstance(marker, dict) else {}


_NOT_PLAIN = re.compile(r"[\\:\x00-\x1f\x7f]")  # backslashes, drive letters and streams, control characters


def _plain(name: object) -> bool:
    """Whether ``name`` is a relative '/'-separated path whose every part is a plain file or folder name."""
    return isinstance(name, str) and all(part not in ("", ".", "..") and not _NOT_PLAIN.search(part)
                                         for part in name.split("/"))


def _stays_inside(folder: str, name: str) -> bool:
    """Whether the plain relative ``name`` under the local ``folder`` resolves inside it (no link leads out)."""
    try:
        root = Path(folder).resolve()
        path = (root / name).resolve()
    except (OSError, RuntimeError):  # a link loop
        return False
    return root in path.parents


def marker_files(folder: str, marker: dict[str, Any]) -> list[str]:
    """The files the ``_SUCCESS`` marker of ``folder`` lists, each checked: a plain relative name (no ``..``, no
    absolute path, no empty part, no backslash or drive) that resolves inside ``folder`` (no link leading out).
    Anything else raises :class:`OutputExists`: a marker wavelist did not write is not trusted to delete files."""
    listed = marker.get("files", [])
    for name in listed if isinstance(listed, list) else [listed]:
        if not isinstance(listed, list) or not _plain(name) or not (is_remote(folder) or _stays_inside(folder, name)):
            shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
            raise OutputExists(f"{join(folder, SUCCESS_MARKER)} lists {shown}, which is not a file inside {folder}; "
                               "wavelist deletes nothing on the word of a marker it did not write: choose another "
                               "--out or remove the folder yourself")
    return listed


def _kind_of(made_by: str) -> str:
    """``"wavelist ingest"`` -> ``"ingest"``."""
    return made_by.removeprefix("wavelist ").split()[0]


def _holds_files(folder: str) -> bool:
    """Whether ``folder`` exists and is not empty (an empty folder may become an output: nothing is lost)."""
    if is_remote(folder):
        return is_folder(folder)
    return Path(folder).is_dir() and any(Path(folder).iterdir())


def require_complete(folder: str, *, made_by: str) -> None:
    """Refuse ``folder`` unless it is a published output of ``made_by`` (it holds the ``_SUCCESS`` marker,
    written last, and the marker names that command).

    A folder without it is missing, not an output of ``made_by``, or what a killed run left behind.
    """
    if not (is_folder(folder) if is_remote(folder) else Path(folder).exists()):
        raise FileNotFoundError(f"{folder} does not exist; give the output folder of {made_by}")
    marker = read_marker(folder)
    if marker is None:
        raise UserError(f"{folder} has no {SUCCESS_MARKER} marker: it is not a complete output of {made_by} "
                        f"(an interrupted run?); rerun {made_by}")
    kind = marker.get("kind")
    if kind and kind != _kind_of(made_by):
        raise UserError(f"{folder} is an output of wavelist {kind}, not of {made_by}")


def staging_folder(out: str) -> str:
    """A fresh sibling of ``out`` to write into; :func:`publish` moves it to ``out`` when complete."""
    suffix = f".partial-{uuid.uuid4().hex[:8]}"
    if is_remote(out):
        parent, name = posixpath.split(out.rstrip("/"))
        return posixpath.join(parent, f".{name}{suffix}")
    final = Path(out).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}{suffix}"
    staging.mkdir()
    return str(staging)


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (local paths compared after resolving links)."""
    if is_remote(path) or is_remote(folder):
        return path.rstrip("/") == folder.rstrip("/") or path.startswith(folder.rstrip("/") + "/")
    path_, folder_ = Path(path).resolve(), Path(folder).resolve()
    return path_ == folder_ or folder_ in path_.parents


def check_inputs(out: str | Path, inputs: Iterable[str | Path | None], *, flag: str = "--out") -> None:
    """Refuse an output ``out`` (a folder or a file) that is one of the run's ``inputs`` (folders or files),
    lies inside one, or holds one: a run never changes what it reads. Local paths are compared after resolving
    links. The one place this rule is checked: every command passes every input it reads."""
    out = str(out)
    for given in inputs:
        if not given:
            continue
        given = str(given)
        if _inside(given, out):
            if _inside(out, given):
                raise OutputExists(f"{flag} {out} is {given}, an input of this run; choose another {flag}")
            raise OutputExists(f"{flag} {out} holds {given}, an input of this run; choose another {flag}")
        if _inside(out, given):
            raise OutputExists(f"{flag} {out} lies inside {given}, an input of this run; choose another {flag}")


def check_output_file(path: str | Path | None, *, inputs: Iterable[str | Path | None] = (),
                      flag: str = "--output") -> None:
    """Refuse an output file ``path`` that is, lies inside or holds an input of the run, or that is a folder."""
    if not path:
        return
    check_inputs(path, inputs, flag=flag)
    if not is_remote(path) and Path(path).is_dir():
        raise OutputExists(f"{flag} {path} is a folder; give a file name")


def check_output(out: str, *, overwrite: bool, kind: str, inputs: Iterable[str | None] = ()) -> None:
    """Fail early, before any work, unless ``out`` may be written by ``wavelist kind``.

    A command writes only into a new (or empty) folder, or replaces, with ``overwrite``, a complete output of
    the same kind whose every file it wrote (the marker lists them, :func:`marker_files`); ``out`` neither
    holds nor lies inside any of this run's ``inputs`` (:func:`check_inputs`). Leftovers of interrupted runs
    (hidden staging folders) are named: never read, safe to delete.
    """
    check_inputs(out, inputs)
    if not is_remote(out) and Path(out).exists() and not Path(out).is_dir():
        raise OutputExists(f"--out {out} is a file; give a folder")
    if _holds_files(out):
        marker = read_marker(out)
        if marker is None:
            raise OutputExists(f"{out} already exists and is not a complete wavelist output (no {SUCCESS_MARKER} "
                               "marker); wavelist replaces only its own outputs: choose another --out")
        if marker.get("kind") != kind:
            what = f"an output of wavelist {marker['kind']}" if marker.get("kind") else \
                "an output of an older wavelist (its marker lists no files)"
            raise OutputExists(f"{out} is {what}, not of wavelist {kind}; choose another --out")
        if not overwrite:
            raise OutputExists(f"{out} already holds a wavelist {kind} output; pass --overwrite to replace it")
        foreign = sorted(set(listing(out)) - set(marker_files(out, marker)) - {SUCCESS_MARKER})
        if foreign:
            raise OutputExists(f"{out} holds {len(foreign)} file(s) wavelist did not write (e.g. "
                               f"{', '.join(foreign[:3])}); move them away or choose another --out")
    leftovers = stale_staging(out)
    if leftovers:
        log.warning("%s: %d unfinished staging folder(s) of earlier runs, safe to delete once no other run "
                    "writes %s: %s", out, len(leftovers), out, ", ".join(leftovers))


def stale_staging(out: str) -> list[str]:
    """Hidden staging folders of ``out`` that earlier (interrupted or running) jobs left."""
    if is_remote(out):
        parent, name = posixpath.split(out.rstrip("/"))
        found = _match(posixpath.join(parent, f".{name}.partial-**"))
        return sorted({posixpath.join(parent, path[len(parent) + 1:].split("/")[0]) for path in found})
    final = Path(out).resolve()
    return sorted(str(p) for p in final.parent.glob(f".{final.name}.partial-*"))


def _marker(staging: str, kind: str) -> str:
    return json.dumps({"kind": kind, "files": [f for f in listing(staging) if f != SUCCESS_MARKER]}) + "\n"


def _remove_listed(folder: str, files: list[str]) -> None:
    """Delete the ``files`` (plain relative paths, :func:`marker_files`) of ``folder``, then the folders left
    empty; nothing else."""
    if is_remote(folder):
        paths = [join(folder, *f.split("/")) for f in files if _plain(f)]
        if paths:
            _remote().delete([p for p in paths if exists(p)])
        return
    root = Path(folder)
    for name in files:
        if _plain(name) and _stays_inside(folder, name):  # checked before the publish: a changed folder keeps it
            (root / name).unlink(missing_ok=True)
    for sub in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()),
                      key=lambda p: len(p.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(root.iterdir()):
        root.rmdir()
    else:
        log.warning("%s kept: it holds files wavelist did not write", root)


def publish(staging: str, out: str, *, overwrite: bool, kind: str) -> None:
    """Move the complete ``staging`` folder to ``out``, with a ``_SUCCESS`` marker naming ``kind`` and listing
    every file written.

    Local: one atomic rename; an old ``out`` is moved aside first, and then only the files its marker lists
    are deleted. Remote (gs://, where there are no folders to rename): the old ``out``'s listed files are
    deleted, each object is renamed, and the marker is written last, so a reader that checks for it never
    sees a partial folder.
    """
    old_files = []
    if _holds_files(out):
        marker = read_marker(out) or {}
        if not overwrite or marker.get("kind") != kind:
            remove(staging)
            raise OutputExists(f"{out} appeared while the job ran; pass --overwrite to replace it")
        try:
            old_files = [*marker_files(out, marker), SUCCESS_MARKER]
        except OutputExists:
            remove(staging)
            raise
    if is_remote(out):
        if old_files:
            _remote().delete([join(out, SUCCESS_MARKER)])  # first, so no reader trusts a half-deleted out
            _remove_listed(out, old_files[:-1])
        marker_text = _marker(staging, kind)
        sources = [join(staging, name) for name in listing(staging)]
        _remote().rename(sources, [out.rstrip("/") + s[len(staging.rstrip("/")):] for s in sources])
        write_text(join(out, SUCCESS_MARKER), marker_text)
        log.info("published %s", out)
        return
    write_text(join(staging, SUCCESS_MARKER), _marker(staging, kind))
    final = Path(out).resolve()
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
    Path(staging).rename(final)
    if old is not None:
        _remove_listed(str(old), old_files)
    log.info("published %s", final)


@contextmanager
def staged_output(out: str, *, overwrite: bool, kind: str, inputs: Iterable[str | None] = ()) -> Iterator[str]:
    """Yield a staging folder; publish it as ``out`` if the block succeeds, delete it if it fails."""
    check_output(out, overwrite=overwrite, kind=kind, inputs=inputs)
    staging = staging_folder(out)
    try:
        yield staging
    except BaseException:
        remove(staging)
        raise
    publish(staging, out, overwrite=overwrite, kind=kind)


# ---- The Beam jobs' own files (issue 33a): the paths they hand to workers, patterns, single files, TFRecords ----

def absolute(path: str | Path) -> str:
    """``path`` as a worker in another folder must see it: a remote path as it is, a local one absolute (links
    resolved)."""
    return str(path) if is_remote(path) else str(Path(path).resolve())


def match_files(pattern: str) -> list[str]:
    """The files that the glob ``pattern`` matches, sorted, local or remote, by Beam's rules (``**`` crosses
    folders); imports Beam."""
    return sorted(m.path for m in _remote().match([str(pattern)])[0].metadata_list)


def delete_file(path: str | Path) -> bool:
    """Delete the file ``path`` if it exists (local or remote); whether it did."""
    if not exists(path):
        return False
    if is_remote(path):
        _remote().delete([str(path)])
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
        handle = _remote().open(str(path), compression_type=compression)
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
