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
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from schemas import layout
from schemas.errors import UserError
from schemas.flags import VERBOSE_ENV

METRICS_NAMESPACE = "wavelist"
log = logging.getLogger(__name__)


class OutputOptions(PipelineOptions):
    """Flags every job shares; declared once because Beam parses all options classes together."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--out", help="output folder of the job")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def _all_subclasses(cls: type) -> list[type]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _all_subclasses(direct))]


def parse_options(argv: list[str] | None) -> PipelineOptions:
    """The pipeline options of ``argv``; a flag that neither wavelist nor Beam knows (which Beam would drop
    with a warning) raises ``ValueError`` naming the closest known flag."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    from schemas.flags import unknown_flags_message

    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in dict.fromkeys(_all_subclasses(PipelineOptions)):
        try:
            cls._add_argparse_args(parser)
        except Exception:  # noqa: BLE001 - another module's options class that clashes is not ours to judge
            continue
    _, unknown = parser.parse_known_args(list(argv or []))
    unknown = [word for word in unknown if word.startswith("-")]
    if unknown:
        raise UserError(unknown_flags_message(unknown, parser._option_string_actions))
    return PipelineOptions(argv)


def require_flags(options: PipelineOptions, *names: str) -> None:
    """Raise ``ValueError`` naming each flag in ``names`` that was not given."""
    values = options.get_all_options()
    missing = [f"--{name.replace('_', '-')}" for name in names if values.get(name) in (None, "")]
    if missing:
        raise UserError(f"missing required flag{'s' if len(missing) > 1 else ''} {' '.join(missing)}")


class OutputExists(FileExistsError):
    """An output folder exists and ``--overwrite`` was not given."""


def require_remote_paths(options: PipelineOptions, paths: dict[str, str | None]) -> None:
    """On a remote runner (Dataflow), every path the workers touch must be remote (gs://)."""
    runner = str(options.view_as(StandardOptions).runner or "")
    if "Dataflow" not in runner:
        return
    local = [f"{flag} {path}" for flag, path in paths.items() if path and not is_remote(path)]
    if local:
        raise UserError(f"{runner} workers cannot reach local paths: {', '.join(local)}; use gs:// paths")


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Discard what native code writes to stderr meanwhile (TensorFlow's oneDNN and absl notices, printed on
    import before any log level applies) unless ``wavelist -v`` asked for everything. Python errors still
    raise as usual."""
    if os.environ.get(VERBOSE_ENV):
        yield
        return
    import sys

    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


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


def local_workers(pipeline: beam.Pipeline) -> int | None:
    """How many worker processes a local run uses (None on a remote runner, which sizes itself)."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    if not isinstance(pipeline.runner, FnApiRunner):
        return None
    direct = pipeline.options.view_as(DirectOptions)
    if direct.direct_running_mode != "multi_processing":
        return 1
    return direct.direct_num_workers or os.cpu_count() or 1


class InputError(UserError):
    """An input that a worker found unusable (a damaged shard, a model Keras refuses): the driver shows its
    message as one line (:func:`run_pipeline`), not as a runner's traceback."""

    PREFIX = "wavelist input error: "

    def __init__(self, message: str):  # a runner may rebuild the exception from its message: prefix it once
        super().__init__((self.PREFIX if self.PREFIX not in message else "") + " ".join(message.split()))


def run_pipeline(pipeline: beam.Pipeline):
    """Run ``pipeline`` to the end; an :class:`InputError` raised on a worker (which the runner wraps in
    its own exception and traceback) is raised again here as a ``ValueError`` with its message alone."""
    import re

    try:
        result = pipeline.run()
        result.wait_until_finish()
        return result
    except Exception as error:
        found = re.search(re.escape(InputError.PREFIX) + r"([^\n]*)", str(error))
        if found is None:
            raise
        raise UserError(found.group(1).split(" [while running")[0].strip()) from error


class DryRun(Exception):
    """Raised inside a staged output when a Dataflow dry run built the job graph and submitted nothing."""


SUCCESS_MARKER = layout.SUCCESS_MARKER  # written last: see publish()


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


SHARD_PREFIX = "part"
SHARD_SUFFIX = ".parquet"


def _checksummed_parquet_sink(prefix: str, schema):
    """Beam's Parquet sink for pyarrow Tables, writing a CRC with every page (its ``open`` does not pass
    ``write_page_checksum``; readers verify them, see ``playlists.tables``)."""
    import pyarrow.parquet as pq
    from apache_beam.io import filebasedsink
    from apache_beam.io.parquetio import _ParquetSink

    class ChecksummedParquetSink(_ParquetSink):
        def open(self, temp_path):
            self._file_handle = filebasedsink.FileBasedSink.open(self, temp_path)
            return pq.ParquetWriter(self._file_handle, self._schema, compression=self._codec,
                                    write_page_checksum=True)

    return ChecksummedParquetSink(prefix, schema, "snappy", False, False, SHARD_SUFFIX, 0, None,
                                  "application/x-parquet", None)


class WriteTable(beam.PTransform):
    """pyarrow Tables -> the folder of shards ``folder/name/part-SSSSS-of-NNNNN.parquet``, written in parallel by
    Beam's file sink (one shard per bundle, at least one even when empty), every page checksummed. Each
    element becomes its own row group(s), so producers size their tables as the row groups they want.
    ``pq.read_table(folder/name)`` and ``pd.read_parquet`` read the folder in one call (see
    :func:`read_parquet` for any file system)."""

    def __init__(self, folder: str, name: str, schema):
        super().__init__()
        self._prefix = posixpath.join(folder, name, SHARD_PREFIX) if is_remote(folder) else os.path.join(
            folder, name, SHARD_PREFIX)
        self._schema = schema
        self._rows = Metrics.counter(METRICS_NAMESPACE, f"rows_written_{name.split('.')[0]}")

    def expand(self, tables):
        schema, rows = self._schema, self._rows

        def conform(table):
            rows.inc(table.num_rows)
            return table.select(schema.names).cast(schema)

        return (tables | "Conform" >> beam.Map(conform)
                | "Shards" >> beam.io.Write(_checksummed_parquet_sink(self._prefix, schema)))


def table_files(path: str) -> list[str]:
    """The Parquet files of the table at ``path``: the file itself, or the shards of a folder written by
    :class:`WriteTable` (``*.parquet`` inside it), sorted; ``[]`` when there is neither."""
    if is_remote(path):
        if FileSystems.exists(path):
            return [path]
        pattern = posixpath.join(path, "*" + SHARD_SUFFIX)
    else:
        if os.path.isfile(path):
            return [path]
        pattern = os.path.join(path, "*" + SHARD_SUFFIX)
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def table_pattern(path: str) -> str:
    """A file pattern for Beam's readers that matches the table at ``path``, a file or a folder of shards."""
    files = table_files(path)
    if len(files) == 1 and files[0] == path:
        return path
    return posixpath.join(path, "*" + SHARD_SUFFIX) if is_remote(path) else os.path.join(path, "*" + SHARD_SUFFIX)


class UnreadableTable(UserError):
    """A Parquet file that is missing or cannot be read."""


def read_parquet(path: str, columns: list[str] | None = None, *, made_by: str = "the job that wrote it"):
    """A pyarrow Table from a local or remote Parquet file or folder of shards (:func:`table_files`); a missing
    or corrupt file raises :class:`UnreadableTable` naming it and the job to rerun."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = table_files(path)
    if not files:
        raise UnreadableTable(f"{path} is missing; rerun {made_by}")
    parts = []
    for file in files:
        try:
            source = file if not is_remote(file) else io.BytesIO(read_bytes(file))
            parts.append(pq.read_table(source, columns=columns, page_checksum_verification=True))
        except (pa.ArrowException, OSError) as error:
            reason = " ".join(str(error).split())
            raise UnreadableTable(f"{file} is not a readable Parquet file ({reason}); rerun {made_by}") from error
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def read_json(path: str, *, made_by: str = "the job that wrote it") -> Any:
    """The JSON document at ``path`` (local or remote); a missing or corrupt file names itself."""
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path} is missing; is it an output of {made_by}?")
    try:
        return json.loads(read_bytes(path))
    except ValueError as error:
        raise UserError(f"{path} is not valid JSON ({error}); rerun {made_by}") from None


def parquet_num_rows(path: str) -> int:
    """Rows of the Parquet table at ``path`` (local or remote, a file or a folder of shards), from the footers."""
    import pyarrow.parquet as pq

    files = table_files(path)
    if not files:
        raise FileNotFoundError(f"{path} does not exist")
    total = 0
    for file in files:
        if not is_remote(file):
            total += pq.read_metadata(file).num_rows
            continue
        with FileSystems.open(file, compression_type="uncompressed") as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def load_audio_spec(folder: str, *, made_by: str):
    """The ``AudioSpec`` saved in ``folder`` (local or remote) by ``made_by``."""
    from schemas.audio import AUDIO_SPEC_FILENAME, AudioSpec

    return AudioSpec.from_dict(read_json(join(folder, AUDIO_SPEC_FILENAME), made_by=made_by))


def read_marker(folder: str) -> dict[str, Any] | None:
    """What the ``_SUCCESS`` marker of ``folder`` says: ``{"kind": "ingest", "files": [...]}``; ``{}`` for a
    marker of an older wavelist (empty); ``None`` when there is no marker."""
    path = join(folder, SUCCESS_MARKER)
    if not FileSystems.exists(path):
        return None
    text = read_bytes(path).decode("utf-8", "replace").strip()
    try:
        marker = json.loads(text) if text else {}
    except ValueError:
        return {}
    return marker if isinstance(marker, dict) else {}


def _kind_of(made_by: str) -> str:
    """``"wavelist ingest"`` -> ``"ingest"``."""
    return made_by.removeprefix("wavelist ").split()[0]


def load_model_info(folder: str):
    """The :class:`~schemas.model_info.ModelInfo` of a MODEL folder (local or remote)."""
    from schemas.layout import ModelFiles
    from schemas.model_info import ModelInfo, ModelInfoError

    path = join(folder, ModelFiles.INFO)
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path} is missing; is {folder} an output of wavelist train?")
    try:
        return ModelInfo.from_json(read_bytes(path), source=path)
    except ModelInfoError as error:
        raise UserError(str(error)) from None


def require_complete(folder: str, *, made_by: str) -> None:
    """Refuse ``folder`` unless it is a published output of ``made_by`` (it holds the ``_SUCCESS`` marker,
    written last, and the marker names that command).

    A folder without it is missing, not an output of ``made_by``, or what a killed run left behind.
    """
    if not _exists(folder):
        raise FileNotFoundError(f"{folder} does not exist; give the output folder of {made_by}")
    marker = read_marker(folder)
    if marker is None:
        raise UserError(f"{folder} has no {SUCCESS_MARKER} marker: it is not a complete output of {made_by} "
                         f"(an interrupted run?); rerun {made_by}")
    kind = marker.get("kind")
    if kind and kind != _kind_of(made_by):
        raise UserError(f"{folder} is an output of wavelist {kind}, not of {made_by}")


def local_folder(folder: str) -> str:
    """``folder`` itself when local; a remote folder is copied once per process into a temporary folder."""
    if not is_remote(folder):
        return folder
    if folder not in _LOCAL_COPIES:
        _LOCAL_COPIES[folder] = _copy_down(folder, tempfile.mkdtemp(prefix="wavelist-"))
    return _LOCAL_COPIES[folder]


def _copy_down(folder: str, target: str) -> str:
    """Copy every file under the remote ``folder`` into the local folder ``target``; returns ``target``."""
    prefix = folder.rstrip("/") + "/"
    for meta in FileSystems.match([prefix + "**"])[0].metadata_list:
        local = Path(target, *meta.path[len(prefix):].split("/"))
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(read_bytes(meta.path))
    return target


_LOCAL_COPIES: dict[str, str] = {}


@contextmanager
def read_locally(folder: str) -> Iterator[str]:
    """``folder`` itself when local; a remote folder copied into a local temporary folder for the block, then
    deleted."""
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
        for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            with FileSystems.create(join(folder, *path.relative_to(local).parts),
                                    compression_type="uncompressed") as handle:
                handle.write(path.read_bytes())
    finally:
        shutil.rmtree(local, ignore_errors=True)


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


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (local paths compared after resolving links)."""
    if is_remote(path) or is_remote(folder):
        return path.rstrip("/") == folder.rstrip("/") or path.startswith(folder.rstrip("/") + "/")
    path_, folder_ = Path(path).resolve(), Path(folder).resolve()
    return path_ == folder_ or folder_ in path_.parents


def _holds_files(folder: str) -> bool:
    """Whether ``folder`` exists and is not empty (an empty folder may become an output: nothing is lost)."""
    if is_remote(folder):
        return _exists(folder)
    return Path(folder).is_dir() and any(Path(folder).iterdir())


def _listing(folder: str) -> list[str]:
    """Every file under ``folder``, as paths relative to it ('/'-separated)."""
    prefix = folder.rstrip("/") + "/"
    if is_remote(folder):
        return sorted(m.path[len(prefix):] for m in FileSystems.match([prefix + "**"])[0].metadata_list)
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def check_output(out: str, *, overwrite: bool, kind: str, inputs: Iterable[str | None] = ()) -> None:
    """Fail early, before any work, unless ``out`` may be written by ``wavelist kind``.

    A command writes only into a new (or empty) folder, or replaces, with ``overwrite``, a complete output of
    the same kind whose every file it wrote (the marker lists them) and which holds none of this run's
    ``inputs``. Leftovers of interrupted runs (hidden staging folders) are named: never read, safe to delete.
    """
    for given in inputs:
        if given and _inside(given, out):
            raise OutputExists(f"--out {out} holds {given}, an input of this run; choose another --out")
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
        foreign = sorted(set(_listing(out)) - set(marker.get("files", [])) - {SUCCESS_MARKER})
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
        found = FileSystems.match([posixpath.join(parent, f".{name}.partial-**")])[0].metadata_list
        return sorted({posixpath.join(parent, m.path[len(parent) + 1:].split("/")[0]) for m in found})
    final = Path(out).resolve()
    return sorted(str(p) for p in final.parent.glob(f".{final.name}.partial-*"))


def _marker(staging: str, kind: str) -> str:
    return json.dumps({"kind": kind, "files": [f for f in _listing(staging) if f != SUCCESS_MARKER]}) + "\n"


def _remove_listed(folder: str, files: list[str]) -> None:
    """Delete the ``files`` (relative paths) of ``folder``, then the folders left empty; nothing else."""
    if is_remote(folder):
        paths = [join(folder, *f.split("/")) for f in files]
        if paths:
            FileSystems.delete([p for p in paths if FileSystems.exists(p)])
        return
    root = Path(folder)
    for name in files:
        (root / name).unlink(missing_ok=True)
    for sub in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
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
        old_files = [*marker.get("files", []), SUCCESS_MARKER]
    if is_remote(out):
        if old_files:
            FileSystems.delete([join(out, SUCCESS_MARKER)])  # first, so no reader trusts a half-deleted out
            _remove_listed(out, old_files[:-1])
        marker_text = _marker(staging, kind)
        sources = [m.path for m in FileSystems.match([staging.rstrip("/") + "/**"])[0].metadata_list]
        FileSystems.rename(sources, [out.rstrip("/") + s[len(staging.rstrip("/")):] for s in sources])
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
