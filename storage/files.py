"""Every file wavelist reads or writes, local or remote (gs://), through the same calls: bytes, text, JSON,
Parquet tables, the saved ``AudioSpec`` and ``ModelInfo``, local copies of remote folders, and outputs that
appear only when complete (:func:`staged_output`).

Callers import this module alone (``from storage import files``). Its parts: paths and bytes in
:mod:`storage.paths`, Parquet tables in :mod:`storage.parquet` (their names are this module's too); the saved
contracts, local copies, safe file names and the staged outputs here.
"""
from __future__ import annotations

import itertools
import json
import logging
import posixpath
import re
import shutil
import tempfile
import unicodedata
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from schemas import layout
from schemas.errors import UserError
from storage.parquet import (SHARD_SUFFIX, UnreadableTable, parquet_num_rows, parquet_schemas,  # noqa: F401
                             read_parquet, table_files, write_parquet)
from storage.paths import (_match, _remote, exists, file_stat, is_folder, is_remote, join, listing,  # noqa: F401
                           open_binary, open_bytes, open_text, read_bytes, read_json, remove, write_bytes, write_lines,
                           write_text)
from storage.paths import absolute, delete_file, match_files, read_records  # noqa: F401 (the Beam jobs' files)

if TYPE_CHECKING:
    from schemas.audio import AudioSpec
    from schemas.model_info import ModelInfo

log = logging.getLogger(__name__)
SUCCESS_MARKER = layout.SUCCESS_MARKER  # written last: see publish()


class OutputExists(FileExistsError):
    """An output folder exists and ``--overwrite`` was not given."""


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
            _remote(folder).delete([p for p in paths if exists(p)])
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
            _remote(out).delete([join(out, SUCCESS_MARKER)])  # first, so no reader trusts a half-deleted out
            _remove_listed(out, old_files[:-1])
        marker_text = _marker(staging, kind)
        sources = [join(staging, name) for name in listing(staging)]
        _remote(out).rename(sources, [out.rstrip("/") + s[len(staging.rstrip("/")):] for s in sources])
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
