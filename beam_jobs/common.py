"""What every wavelist Beam job shares: options, runner defaults, errors from workers, the table writer.
File access and output publishing, local or gs://, are :mod:`storage.files`."""
from __future__ import annotations

import os
import posixpath
from contextlib import contextmanager
from typing import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from schemas.errors import UserError
from schemas.flags import VERBOSE_ENV
from storage import files
from storage.files import SHARD_SUFFIX

METRICS_NAMESPACE = "wavelist"


class OutputOptions(PipelineOptions):
    """Flags every job shares; declared once because Beam parses all options classes together."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--out", help="output folder of the job")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def _all_subclasses(cls: type) -> list[type]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _all_subclasses(direct))]


def parse_options(argv: list[str] | None) -> PipelineOptions:
    """The pipeline options of ``argv``, every value checked here, in the launching process: a flag that neither
    wavelist nor Beam knows (which Beam would drop with a warning) raises ``UserError`` naming the closest known
    flag; a value a flag cannot take (``--k abc``, ``--direct_num_workers`` with no number) raises a one-line
    ``UserError`` instead of Beam's page of usage."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    from schemas.flags import empty_value, unknown_flags_message

    class OneLineParser(_BeamArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            raise UserError(" ".join(message.split()))

    empty = empty_value(argv or [])
    if empty:
        raise UserError(empty)
    parser = OneLineParser(allow_abbrev=False, prog="wavelist")
    for cls in dict.fromkeys(_all_subclasses(PipelineOptions)):
        try:
            cls._add_argparse_args(parser)
        except Exception:  # noqa: BLE001 - another module's options class that clashes is not ours to judge
            continue
    _, unknown = parser.parse_known_args(list(argv or []))
    unknown = [word for word in unknown if word.startswith("-")]
    if unknown:
        raise UserError(unknown_flags_message(unknown, parser._option_string_actions))
    options = PipelineOptions(argv)
    workers = options.view_as(DirectOptions).direct_num_workers
    if workers is not None and not 0 <= workers <= 1024:
        raise UserError(f"--direct_num_workers {workers}: give a number of worker processes from 1 to 1024 "
                        "(0: one per core)")
    return options


def runner_flags(options: PipelineOptions, argv: list[str] | None) -> list[str]:
    """The local runner's flags that ``argv`` gave (``--direct_running_mode``, ``--direct_num_workers``), as
    ``--flag=value`` whichever way they were written, for a job that runs another job."""
    given = " ".join(argv or [])
    direct = options.view_as(DirectOptions)
    return [f"--{name}={getattr(direct, name)}" for name in ("direct_running_mode", "direct_num_workers")
            if f"--{name}" in given]


def require_flags(options: PipelineOptions, *names: str) -> None:
    """Raise ``ValueError`` naming each flag in ``names`` that was not given."""
    values = options.get_all_options()
    missing = [f"--{name.replace('_', '-')}" for name in names if values.get(name) in (None, "")]
    if missing:
        raise UserError(f"missing required flag{'s' if len(missing) > 1 else ''} {' '.join(missing)}")


def require_remote_paths(options: PipelineOptions, paths: dict[str, str | None]) -> None:
    """On a remote runner (Dataflow), every path the workers touch must be remote (gs://)."""
    runner = str(options.view_as(StandardOptions).runner or "")
    if "Dataflow" not in runner:
        return
    local = [f"{flag} {path}" for flag, path in paths.items() if path and not files.is_remote(path)]
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


def write_parquet(pcoll, folder: str, name: str, schema, label: str):
    """Write ``pcoll`` (dict rows) as the single file ``folder/name`` with ``schema``."""
    return pcoll | label >> beam.io.WriteToParquet(
        posixpath.join(folder, name), schema, num_shards=1, shard_name_template=""
    )


SHARD_PREFIX = "part"


def _checksummed_parquet_sink(prefix: str, schema):
    """Beam's Parquet sink for pyarrow Tables, writing a CRC with every page (its ``open`` does not pass
    ``write_page_checksum``; readers verify them: :func:`storage.files.read_parquet`)."""
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
    :func:`storage.files.read_parquet` for any file system)."""

    def __init__(self, folder: str, name: str, schema):
        super().__init__()
        self._prefix = files.join(folder, name, SHARD_PREFIX)
        self._schema = schema
        self._rows = Metrics.counter(METRICS_NAMESPACE, f"rows_written_{name.split('.')[0]}")

    def expand(self, tables):
        schema, rows = self._schema, self._rows

        def conform(table):
            rows.inc(table.num_rows)
            return table.select(schema.names).cast(schema)

        return (tables | "Conform" >> beam.Map(conform)
                | "Shards" >> beam.io.Write(_checksummed_parquet_sink(self._prefix, schema)))


def table_pattern(path: str) -> str:
    """A file pattern for Beam's readers that matches the table at ``path``, a file or a folder of shards."""
    if files.table_files(path) == [path]:
        return path
    return files.join(path, "*" + SHARD_SUFFIX)
