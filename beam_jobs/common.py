"""What every wavelist Beam job shares: runner defaults, output publishing, file access."""
from __future__ import annotations

import io
import json
import logging
import os
import posixpath
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from typing import Any, Iterable, Iterator
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

METRICS_NAMESPACE = "wavelist"
log = logging.getLogger(__name__)


class OutputOptions(PipelineOptions):
    """Flags every job shares; declared once because Beam parses all options classes together."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--out", help="output folder of the job")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def require_flags(options: PipelineOptions, *names: str) -> None:
    """Raise ``ValueError`` naming each flag in ``names`` that was not given."""
    values = options.get_all_options()
    missing = [f"--{name.replace('_', '-')}" for name in names if values.get(name) in (None, "")]
    if missing:
        raise ValueError(f"missing required flag{'s' if len(missing) > 1 else ''} {' '.join(missing)}")


class OutputExists(FileExistsError):
    """An output folder exists and ``--overwrite`` was not given."""


def require_remote_paths(options: PipelineOptions, paths: dict[str, str | None]) -> None:
    """On a remote runner (Dataflow), every path the workers touch must be remote (gs://)."""
    runner = str(options.view_as(StandardOptions).runner or "")
    if "Dataflow" not in runner:
        return
    local = [f"{flag} {path}" for flag, path in paths.items() if path and not is_remote(path)]
    if local:
        raise ValueError(f"{runner} workers cannot reach local paths: {', '.join(local)}; use gs:// paths")


def make_pipeline(options: PipelineOptions, argv: list[str] | None) -> beam.Pipeline:
    """A pipeline on the runner the user chose, else Beam's local batch engine in multi-process mode.

    With no ``--runner``, jobs run on the FnApiRunner, the engine DirectRunner hands batch pipelines to,
    with one worker process per core unless ``--direct_running_mode`` / ``--direct_num_workers`` say
    otherwise. It is created directly because DirectRunner first tries to download the Prism runner's
    binary, which fails (or hangs) on machines without internet access.
    """
    if options.view_as(StandardOptions).runner is not None:
        return beam.Pipeline(options=options)
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    given = " ".join(argv or [])
    direct = options.view_as(DirectOptions)
    if "--direct_running_mode" not in given:
        direct.direct_running_mode = "multi_processing"
    if "--direct_num_workers" not in given:
        direct.direct_num_workers = os.cpu_count() or 1
    return beam.Pipeline(runner=FnApiRunner(), options=options)


class DryRun(Exception):
    """Raised inside a staged output when a Dataflow dry run built the job graph and submitted nothing."""


SUCCESS_MARKER = "_SUCCESS"


def is_remote(path: str) -> bool:
    return "://" in path


def join(folder: str, *names: str) -> str:
    """Path join that keeps gs:// URLs intact."""
    return posixpath.join(folder, *names) if is_remote(folder) else os.path.join(folder, *names)


def read_bytes(path: str) -> bytes:
    """The whole file at ``path`` (local or any Beam filesystem such as gs://)."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read()


def write_text(path: str, text: str) -> str:
    with FileSystems.create(path, compression_type="uncompressed") as handle:
        handle.write(text.encode("utf-8"))
    return path


def write_lines(path: str, lines: Iterable[str]) -> str:
    return write_text(path, "".join(line + "\n" for line in lines))


def write_parquet(pcoll, folder: str, name: str, schema, label: str):
    """Write ``pcoll`` (dict rows) as the single file ``folder/name`` with ``schema``."""
    return pcoll | label >> beam.io.WriteToParquet(
        posixpath.join(folder, name), schema, num_shards=1, shard_name_template=""
    )


class UnreadableTable(ValueError):
    """A Parquet file that is missing or cannot be read."""


def read_parquet(path: str, columns: list[str] | None = None, *, made_by: str = "the job that wrote it"):
    """A pyarrow Table from a local or remote Parquet file; a missing or corrupt file raises
    :class:`UnreadableTable` naming it and the job to rerun."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not FileSystems.exists(path):
        raise UnreadableTable(f"{path} is missing; rerun {made_by}")
    try:
        source = path if not is_remote(path) else io.BytesIO(read_bytes(path))
        return pq.read_table(source, columns=columns)
    except (pa.ArrowException, OSError) as error:
        reason = " ".join(str(error).split())
        raise UnreadableTable(f"{path} is not a readable Parquet file ({reason}); rerun {made_by}") from error


def read_json(path: str, *, made_by: str = "the job that wrote it") -> Any:
    """The JSON document at ``path`` (local or remote); a missing or corrupt file names itself."""
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path} is missing; is it an output of {made_by}?")
    try:
        return json.loads(read_bytes(path))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); rerun {made_by}") from None


def parquet_num_rows(path: str) -> int:
    """Rows of the Parquet file at ``path`` (local or remote), from its footer."""
    import pyarrow.parquet as pq

    if not is_remote(path):
        return pq.read_metadata(path).num_rows
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def load_audio_spec(folder: str, *, made_by: str):
    """The ``AudioSpec`` saved in ``folder`` (local or remote) by ``made_by``."""
    from schemas.audio import AUDIO_SPEC_FILENAME, AudioSpec

    return AudioSpec.from_dict(read_json(join(folder, AUDIO_SPEC_FILENAME), made_by=made_by))


def require_complete(folder: str, *, made_by: str) -> None:
    """Refuse ``folder`` unless it is a published output (it holds the ``_SUCCESS`` marker, written last).

    A folder without it is missing, not an output of ``made_by``, or what a killed run left behind.
    """
    if not _exists(folder):
        raise FileNotFoundError(f"{folder} does not exist; give the output folder of {made_by}")
    if not FileSystems.exists(join(folder, SUCCESS_MARKER)):
        raise ValueError(f"{folder} has no {SUCCESS_MARKER} marker: it is not a complete output of {made_by} "
                         f"(an interrupted run?); rerun {made_by}")


def local_folder(folder: str) -> str:
    """``folder`` itself when local; a remote folder is copied once per process into a temporary folder."""
    if not is_remote(folder):
        return folder
    if folder not in _LOCAL_COPIES:
        target = tempfile.mkdtemp(prefix="wavelist-")
        prefix = folder.rstrip("/") + "/"
        for meta in FileSystems.match([prefix + "**"])[0].metadata_list:
            local = Path(target, *meta.path[len(prefix):].split("/"))
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(read_bytes(meta.path))
        _LOCAL_COPIES[folder] = target
    return _LOCAL_COPIES[folder]


_LOCAL_COPIES: dict[str, str] = {}


def open_text(path: str):
    """A text handle on ``path`` (local or any Beam filesystem); raises FileNotFoundError naming it."""
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    # newline="": the csv module and pandas see line ends inside quoted fields as written
    return io.TextIOWrapper(FileSystems.open(path, compression_type="uncompressed"), encoding="utf-8", newline="")


def _exists(out: str) -> bool:
    if not is_remote(out):
        return Path(out).exists()
    return bool(FileSystems.match([out.rstrip("/") + "/**"])[0].metadata_list)


def remove(folder: str) -> None:
    if is_remote(folder):
        FileSystems.delete([folder.rstrip("/") + "/"])
    else:
        shutil.rmtree(folder, ignore_errors=True)


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


def check_output(out: str, *, overwrite: bool) -> None:
    """Fail early, before any work, when ``out`` exists and may not be replaced; name leftovers of
    interrupted runs (hidden staging folders), which are never read and may be deleted."""
    if _exists(out) and not overwrite:
        incomplete = "" if FileSystems.exists(join(out, SUCCESS_MARKER)) else (
            f" (without a {SUCCESS_MARKER} marker: incomplete, e.g. an interrupted run)")
        raise OutputExists(f"{out} already exists{incomplete}; pass --overwrite to replace it")
    leftovers = stale_staging(out)
    if leftovers:
        log.warning("%s: %d unfinished staging folder(s) of earlier runs, safe to delete once no other run "
                    "writes %s: %s", out, len(leftovers), out, ", ".join(leftovers))


def stale_staging(out: str) -> list[str]:
    """Hidden staging folders of ``out`` that earlier (interrupted or running) jobs left."""
    if is_remote(out):
        parent, name = posixpath.split(out.rstrip("/"))
        found = FileSystems.match([posixpath.join(parent, f".{name}.partial-**")])[0].metadata_list
        return sorted({posixpath.join(parent, m.path[len(parent) + 1:].split("/")[0]) for m in found})
    final = Path(out).resolve()
    return sorted(str(p) for p in final.parent.glob(f".{final.name}.partial-*"))


def publish(staging: str, out: str, *, overwrite: bool) -> None:
    """Move the complete ``staging`` folder to ``out``.

    Local: one atomic rename; an old ``out`` is moved aside first and deleted after. Remote (gs://,
    where there are no folders to rename): the old ``out`` is deleted, each object is renamed, and the
    ``_SUCCESS`` marker is written last, so a reader that checks for it never sees a partial folder.
    """
    if _exists(out) and not overwrite:
        remove(staging)
        raise OutputExists(f"{out} already exists; pass --overwrite to replace it")
    if is_remote(out):
        if _exists(out):
            if FileSystems.exists(join(out, SUCCESS_MARKER)):  # first, so no reader trusts a half-deleted out
                FileSystems.delete([join(out, SUCCESS_MARKER)])
            remove(out)
        sources = [m.path for m in FileSystems.match([staging.rstrip("/") + "/**"])[0].metadata_list]
        FileSystems.rename(sources, [out.rstrip("/") + s[len(staging.rstrip("/")):] for s in sources])
        write_text(join(out, SUCCESS_MARKER), "")
        log.info("published %s", out)
        return
    write_text(join(staging, SUCCESS_MARKER), "")
    final = Path(out).resolve()
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
    Path(staging).rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("published %s", final)


@contextmanager
def staged_output(out: str, *, overwrite: bool) -> Iterator[str]:
    """Yield a staging folder; publish it as ``out`` if the block succeeds, delete it if it fails."""
    check_output(out, overwrite=overwrite)
    staging = staging_folder(out)
    try:
        yield staging
    except BaseException:
        remove(staging)
        raise
    publish(staging, out, overwrite=overwrite)
