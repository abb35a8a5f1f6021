"""Load the embed job's Parquet tables once (a local or gs:// folder), with clear errors for anything missing or
mismatched."""
from __future__ import annotations

import difflib
import logging
import threading
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import ThreadpoolController

from core.vectors import unit
from playlists import vector_index as vector_indexes
from playlists.text import for_terminal
from schemas import tables as schemas
from schemas.errors import UserError
from schemas.layout import SUMMARY, TableFiles
from storage import files

log = logging.getLogger(__name__)

CANDIDATES = 8  # tracks an ambiguous name lists
SUGGESTIONS = 5  # close ids or titles an unknown one lists
# Titles that difflib compares with an unknown title, at most: those that share a word or the first letters with
# it. Suggestions then cost milliseconds whatever the catalogue's size (difflib over the 200,000 titles of a
# large catalogue took 6 s).
FUZZY_TITLE_CANDIDATES = 300
UNIT_BLOCK = 65_536  # vectors scaled to unit length at a time when the tables are loaded


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS uses one thread. A query's products are small or memory-bound: on a busy
    2-core machine a second BLAS thread made a 1,000,000 x 64 matrix-vector product 6 times slower (260 vs
    40 ms) and a 400 x 64 one 10 times slower (benchmarks/RESULTS.md)."""
    return _blas().limit(limits=1, user_api="blas")


class TablesError(UserError):
    """A tables folder that cannot be used as it is."""


class UnknownTrack(UserError, LookupError):
    """A track id (or title) that the tables do not hold."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


def as_utf8(text: str) -> str:
    """``text`` as valid UTF-8, as tables store text: the bytes of a name that is not UTF-8 (surrogate escapes, as
    a command line or a file name gives them) written as ``\\xNN``; any other lone surrogate escaped."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_id(text: str) -> int | None:
    """The track id that ``text`` spells in decimal digits (one optional minus sign; any script's digits), or
    None when it spells none; one beyond 64 bits raises :class:`UnknownTrack` (before a long conversion)."""
    digits = text[1:] if text.startswith("-") else text
    if not digits.isdecimal():
        return None
    if len(digits.lstrip("0")) > 19 or not -2**63 <= int(text) < 2**63:
        shown = text if len(text) <= 24 else text[:24] + "..."
        raise UnknownTrack(f"track {shown} is not a track id: track ids are 64-bit integers")
    return int(text)


def _read(folder: Path | str, name: str, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """Table ``name`` of ``folder`` (:func:`storage.files.read_parquet`: checksums verified, columns checked
    against ``schema``); any problem is a :class:`TablesError` naming the file."""
    try:
        return files.read_parquet(files.join(folder, name), columns, schema=schema, made_by="wavelist embed")
    except files.UnreadableTable as error:
        raise TablesError(str(error)) from error


@dataclass
class Tables:
    """Track vectors (unit length, rows sorted by id) and the catalogue columns aligned with those rows.

    The neighbour table is read on first use (:attr:`neighbour_rows`) and kept as arrays indexed by row, so a
    radio is an array lookup.
    """

    folder: Path | str  # a local Path, or a gs:// URL
    ids: np.ndarray  # [shape=(n,)] int64, sorted
    vectors: np.ndarray  # [shape=(n, d)] float32, unit rows
    catalogue: pa.Table  # tracks.parquet, sorted by track_id
    model_id: str
    _columns: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    _vector_index: vector_indexes.VectorIndex | None = field(repr=False, default=None)
    _index_lock: threading.Lock = field(repr=False, compare=False, default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, track_ids: np.ndarray) -> np.ndarray:
        """Rows of known ``track_ids`` (``-1`` for unknown ones)."""
        track_ids = np.asarray(track_ids, dtype=np.int64)
        if len(track_ids) > 100_000:  # a hash lookup: 50 M ids in 2.4 s instead of 12 s by binary search
            rows = pc.index_in(pa.array(track_ids), value_set=pa.array(self.ids))
            return pc.fill_null(rows, -1).to_numpy().astype(np.int64)
        rows = np.minimum(np.searchsorted(self.ids, track_ids), len(self.ids) - 1)
        return np.where(self.ids[rows] == track_ids, rows, -1)

    def row(self, track_id: int) -> int:
        """Row of ``track_id`` in ``vectors``; an unknown id raises :class:`UnknownTrack` with suggestions."""
        if not -2**63 <= int(track_id) < 2**63:
            raise UnknownTrack(f"track {str(track_id)[:40]} is not in {self.folder}: track ids are 64-bit integers")
        row = int(self.rows_of(np.array([int(track_id)]))[0])
        if row < 0:
            hint = f"; did you mean {', '.join(self._close_ids(int(track_id)))}?" if len(self) else ""
            raise UnknownTrack(f"track {track_id} is not in {self.folder}{hint}")
        return row

    def _close_ids(self, track_id: int, n: int = SUGGESTIONS) -> list[str]:
        """Known ids one typing slip away from ``track_id`` (a digit changed, added, left out or two swapped),
        numerically nearest first, then the numerically nearest ids: a few hundred lookups, whatever the
        catalogue's size."""
        sign, digits = ("-", str(track_id)[1:]) if track_id < 0 else ("", str(track_id))
        slips = set()
        for at in range(len(digits) + 1):
            slips.update(digits[:at] + d + digits[at:] for d in "0123456789")
            if at < len(digits):
                slips.update(digits[:at] + d + digits[at + 1:] for d in "0123456789")
                slips.add(digits[:at] + digits[at + 1:])
            if at + 1 < len(digits):
                slips.add(digits[:at] + digits[at + 1] + digits[at] + digits[at + 2:])
        numbers = {int(sign + slip) for slip in slips if slip} - {track_id}
        candidates = np.array(sorted(x for x in numbers if -2**63 <= x < 2**63), dtype=np.int64)
        known = candidates[self.rows_of(candidates) >= 0] if len(candidates) else candidates
        close = sorted(known.tolist(), key=lambda x: abs(x - track_id))[:n]
        at = int(np.searchsorted(self.ids, track_id))
        nearby = [int(i) for i in self.ids[max(0, at - n // 2): at + n - n // 2] if int(i) not in close]
        return [str(i) for i in (close + nearby)[:n]]

    @cached_property
    def _folded_titles(self) -> pa.Array:
        """Each row's title, case-folded (``""`` for none): exact titles are found by a vectorised comparison."""
        return pa.array([(t or "").casefold() for t in self.column("title")], pa.string())

    @cached_property
    def _folded_text(self) -> pa.Array:
        """Each row's ``id title artist album``, case-folded: what :meth:`search` looks for words in."""
        columns = zip(self.ids.tolist(), self.column("title"), self.column("artist"), self.column("album"))
        return pa.array([f"{i} {t or ''} {a or ''} {b or ''}".casefold() for i, t, a, b in columns], pa.string())

    @cached_property
    def _distinct_titles(self) -> tuple[pa.Array, list[str]]:
        """The distinct titles, case-folded and sorted, and each one's first spelling (for suggestions)."""
        spelling: dict[str, str] = {}
        for title in self.column("title"):
            if title:
                spelling.setdefault(title.casefold(), title)
        folded = sorted(spelling)
        return pa.array(folded, pa.string()), [spelling[t] for t in folded]

    @property
    def vector_index(self) -> vector_indexes.VectorIndex:
        """The approximate index of :attr:`vectors` (:class:`playlists.vector_index.VectorIndex`), built on first
        use (once, whichever thread asks first; the others wait for it)."""
        with self._index_lock:
            if self._vector_index is None:
                self._vector_index = vector_indexes.VectorIndex(self.vectors)
                log.info("indexed %d tracks in %.1f s (%d lists, %.0f MB)", len(self), self._vector_index.build_seconds,
                         self._vector_index.lists, self._vector_index.nbytes / 1e6)
            return self._vector_index

    def prepare(self) -> None:
        """Build now what lookups by title and search build on first use, and the vector index where journeys
        use it (a server does it before serving)."""
        self._folded_titles, self._folded_text, self._distinct_titles  # noqa: B018
        if len(self) > vector_indexes.INDEX_ABOVE:
            self.vector_index  # noqa: B018

    def _close_titles(self, wanted: str, n: int = SUGGESTIONS) -> list[str]:
        """Titles close to the case-folded ``wanted`` (difflib), compared only with the titles that hold one of
        its words of three letters or more or begin with its first three letters
        (:data:`FUZZY_TITLE_CANDIDATES` at most)."""
        folded, spelling = self._distinct_titles
        if not wanted or not len(folded):
            return []
        mask = pc.starts_with(folded, wanted[:3])
        for word in {w for w in wanted.split() if len(w) >= 3}:
            mask = pc.or_(mask, pc.match_substring(folded, word))
        rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if len(rows) > FUZZY_TITLE_CANDIDATES:  # the ones closest in length
            lengths = pc.utf8_length(folded.take(pa.array(rows))).to_numpy()
            rows = rows[np.argsort(np.abs(lengths - len(wanted)), kind="stable")[:FUZZY_TITLE_CANDIDATES]]
        candidates = {folded[int(r)].as_py(): spelling[int(r)] for r in rows}
        return [candidates[t] for t in difflib.get_close_matches(wanted, list(candidates), n=n, cutoff=0.5)]

    def resolve(self, text: str | int, *, suggest: bool = True) -> int:
        """The track id that ``text`` names: an id, a title (case-insensitive) held by one track, or words
        (title, artist, album) that one track alone matches, as the app's search finds them. Anything else
        raises :class:`UnknownTrack` listing the candidates (on one line), and close titles when ``suggest``."""
        text = as_utf8(str(text).strip())  # the text Arrow compares with titles is valid UTF-8
        track_id = parse_id(text)  # no int() of thousands of digits: no id has more than 19
        if track_id is not None:
            return int(self.ids[self.row(track_id)])
        wanted = text.casefold()
        exact = np.flatnonzero(pc.equal(self._folded_titles, wanted).to_numpy(zero_copy_only=False)) \
            if wanted else []
        if len(exact) == 1:
            return int(self.ids[exact[0]])
        if len(exact):
            raise UnknownTrack(f"title {text!r} names {len(exact)} tracks: {self.describe(self.ids[exact])}; "
                               "give a track id")
        found = self.search(text, limit=CANDIDATES + 1) if wanted else []
        if len(found) == 1:
            return found[0]
        if found:
            more = " ..." if len(found) > CANDIDATES else ""
            raise UnknownTrack(f"{text!r} matches {'more than ' if more else ''}{min(len(found), CANDIDATES)} "
                               f"tracks: {self.describe(found[:CANDIDATES])}{more}; give a track id or more words")
        close = self._close_titles(wanted) if suggest else []
        hint = f"; did you mean {', '.join(repr(t) for t in close)}?" if close else ""
        raise UnknownTrack(f"no track id, title, artist or album {text!r} in {self.folder}{hint}")

    def describe(self, track_ids: Any) -> str:
        """``id artist - title`` of each track, ``;``-separated, on one line (for messages)."""
        rows = self.rows_of(np.asarray(track_ids, dtype=np.int64))
        artist, title = self.column("artist"), self.column("title")
        return "; ".join(for_terminal(f"{int(self.ids[r])} {artist[r] or 'unknown'} - {title[r] or ''}")
                         for r in rows)

    def search(self, query: str, limit: int = 20) -> list[int]:
        """Track ids whose id, title, artist or album holds every word of ``query`` (case-insensitive), in row
        order. A vectorised scan (Arrow): milliseconds for 200,000 tracks, without holding Python's lock."""
        words = as_utf8(query).casefold().split()
        if not words:
            return [int(i) for i in self.ids[:limit]]
        found = None
        for word in dict.fromkeys(words):
            holds = pc.match_substring(self._folded_text, word)
            found = holds if found is None else pc.and_(found, holds)
        rows = np.flatnonzero(found.to_numpy(zero_copy_only=False))[:limit]
        return [int(i) for i in self.ids[rows]]

    def vector(self, track_id: int) -> np.ndarray:
        return self.vectors[self.row(track_id)]

    def column(self, name: str) -> np.ndarray:
        """Catalogue column ``name`` aligned with the rows (``None`` where tracks.parquet lacks the track)."""
        if name not in self._columns:
            table_ids = self.catalogue["track_id"].to_numpy()
            at = np.minimum(np.searchsorted(table_ids, self.ids), max(len(table_ids) - 1, 0))
            present = table_ids[at] == self.ids if len(table_ids) else np.zeros(len(self.ids), bool)
            chunked = self.catalogue[name]
            values = np.empty(len(chunked), dtype=object)  # a null is None (to_numpy makes it NaN)
            values[:] = chunked.to_pylist() if chunked.null_count else chunked.to_numpy(zero_copy_only=False)
            column = np.full(len(self.ids), None, dtype=object)
            column[present] = values[at[present]]
            self._columns[name] = column
        return self._columns[name]

    def track(self, track_id: int) -> dict[str, Any]:
        """The catalogue row of ``track_id`` (only ``track_id`` when tracks.parquet lacks it)."""
        row = self.row(track_id)
        values = {name: self.column(name)[row] for name in self.catalogue.column_names if name != "track_id"}
        return {"track_id": int(track_id), **{k: v for k, v in values.items() if v is not None}}

    @cached_property
    def tracks(self) -> dict[int, dict[str, Any]]:
        """Every catalogue row by track id (small catalogues; large ones should use :meth:`column`)."""
        return {row["track_id"]: row for row in self.catalogue.to_pylist()}

    @cached_property
    def _neighbour_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        path = files.join(self.folder, TableFiles.NEIGHBOURS)
        if not files.table_files(path):
            empty = np.zeros((len(self), 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        table = _read(self.folder, TableFiles.NEIGHBOURS, schemas.NEIGHBOURS)
        track_ids, ranks = table["track_id"].to_numpy(), table["rank"].to_numpy()
        neighbour_rows = self.rows_of(table["neighbour_id"].to_numpy())
        similarity = table["similarity"].to_numpy()
        check_neighbours(path, track_ids, ranks, self.rows_of(track_ids), neighbour_rows, similarity)
        k = len(track_ids) // max(len(self), 1)
        if len(track_ids) == k * len(self) and k:
            runs = track_ids.reshape(-1, k)
            if np.all(runs == runs[:, :1]) and np.all(np.diff(ranks.reshape(-1, k)) > 0):
                # as the embed job writes it: every track, k rows each by rank; shards in any track order
                order = np.argsort(runs[:, 0], kind="stable")
                if np.array_equal(runs[order, 0], self.ids):
                    return neighbour_rows.reshape(-1, k)[order], similarity.reshape(-1, k)[order].astype(np.float32)
        rows = self.rows_of(track_ids)
        if not (np.all(np.diff(rows) >= 0) and np.all((np.diff(rows) > 0) | (np.diff(ranks) > 0))):
            order = np.lexsort((ranks, rows))
            rows, neighbour_rows, similarity = rows[order], neighbour_rows[order], similarity[order]
        keep = (rows >= 0) & (neighbour_rows >= 0)
        rows, neighbour_rows, similarity = rows[keep], neighbour_rows[keep], similarity[keep]
        counts = np.bincount(rows, minlength=len(self))
        k = int(counts.max()) if len(counts) else 0
        slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        by_row = np.full((len(self), k), -1, dtype=np.int64)
        sims = np.full((len(self), k), np.nan, dtype=np.float32)
        by_row[rows, slot] = neighbour_rows
        sims[rows, slot] = similarity
        return by_row, sims

    @property
    def neighbour_rows(self) -> np.ndarray:
        """[shape=(n, k)] rows of each row's stored neighbours, best first; ``-1`` pads short lists."""
        return self._neighbour_arrays[0]

    @property
    def neighbour_similarities(self) -> np.ndarray:
        """[shape=(n, k)] cosine similarity of each stored neighbour; NaN pads short lists."""
        return self._neighbour_arrays[1]

    def stored_neighbours(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(neighbour_ids, similarities)`` of ``track_id`` from neighbours.parquet, best first."""
        row = self.row(track_id)
        rows = self.neighbour_rows[row]
        known = rows >= 0
        return self.ids[rows[known]], self.neighbour_similarities[row][known]


def _check_summary(folder: Path | str, embedded: int) -> None:
    """The row count that the embed job recorded in summary.json, where it is there, must be the one read."""
    import json

    path = files.join(folder, SUMMARY)
    if not files.exists(path):
        return
    try:
        recorded = json.loads(files.read_bytes(path).decode("utf-8")).get("tracks_embedded")
    except (ValueError, AttributeError) as error:  # UnicodeDecodeError is a ValueError
        raise TablesError(f"{path} is not the JSON summary wavelist embed writes ({error})") from None
    if recorded is not None and recorded != embedded:
        raise TablesError(f"{files.join(folder, TableFiles.EMBEDDINGS)} holds {embedded} tracks but {path} records {recorded}; "
                          "a table was replaced or truncated: rerun wavelist embed")


# Stored cosines may exceed 1 by float rounding, never by more.
SIMILARITY_SLACK = 1e-3


def check_neighbours(path: str, track_ids: np.ndarray, ranks: np.ndarray, rows: np.ndarray,
                     neighbour_rows: np.ndarray, similarity: np.ndarray) -> None:
    """Refuse a neighbour table that cannot be what the embed job wrote: similarities that are not cosines,
    ranks below 1, tracks unknown to the embeddings. The error names the file and the first bad row."""
    problems = [
        (~np.isfinite(similarity) | (np.abs(similarity) > 1 + SIMILARITY_SLACK), "a similarity outside [-1, 1]"),
        (ranks < 1, "a rank below 1"),
        (rows < 0, "a track that embeddings.parquet does not hold"),
        (neighbour_rows < 0, "a neighbour that embeddings.parquet does not hold"),
    ]
    for bad, what in problems:
        if bad.any():
            at = int(np.argmax(bad))
            raise TablesError(f"{path} is damaged: row {at} (track {track_ids[at]}, rank {ranks[at]}) has {what} "
                              f"({int(bad.sum())} such rows); rerun wavelist embed")


def check_vectors(path: str, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Refuse vectors that are not finite or are zero: no cosine can be taken of them."""
    norms = np.linalg.norm(vectors, axis=1) if vectors.size else np.ones(len(ids))
    bad = ~np.isfinite(vectors).all(axis=1) | ~np.isfinite(norms) | (norms == 0)  # core.vectors.unit's rule
    if bad.any():
        raise TablesError(f"{path} is damaged: track {ids[int(np.argmax(bad))]} has a vector that is not finite "
                          f"or is zero ({int(bad.sum())} such tracks); rerun wavelist embed")


def load_tables(folder: str | Path) -> Tables:
    """Read ``embeddings.parquet`` and ``tracks.parquet`` of an embed output folder, local or gs://."""
    folder = folder if files.is_remote(folder) else Path(folder)
    if not files.is_folder(folder):
        raise TablesError(f"{folder} is not a folder; give the TABLES folder that wavelist embed wrote")
    embeddings = _read(folder, TableFiles.EMBEDDINGS, schemas.EMBEDDINGS)
    model_id = schemas.read_metadata(embeddings.schema).get("model_id", "unknown")
    try:
        neighbour_schemas = files.parquet_schemas(files.join(folder, TableFiles.NEIGHBOURS), made_by="wavelist embed")
    except files.UnreadableTable as error:
        raise TablesError(str(error)) from error
    for _, neighbours_schema in neighbour_schemas:
        neighbours_model = schemas.read_metadata(neighbours_schema).get("model_id", "unknown")
        if neighbours_model != model_id:
            raise TablesError(f"{folder} mixes two models: embeddings from {model_id}, "
                              f"neighbours from {neighbours_model}; rerun wavelist embed")
    ids = embeddings["track_id"].to_numpy()
    lists = embeddings["embedding"].combine_chunks()
    lengths = np.unique(lists.value_lengths().to_numpy(zero_copy_only=False)) if len(lists) else np.array([0])
    if len(lengths) != 1 or lists.null_count:
        raise TablesError(f"{files.join(folder, TableFiles.EMBEDDINGS)} holds vectors of lengths {lengths.tolist()}; "
                          "every track needs one vector of the same length")
    vectors = lists.flatten().to_numpy().astype(np.float32).reshape(len(ids), int(lengths[0]))
    order = np.argsort(ids, kind="stable")
    ids, vectors = ids[order], vectors[order]
    if len(ids) and np.any(ids[1:] == ids[:-1]):
        raise TablesError(f"{files.join(folder, TableFiles.EMBEDDINGS)} holds track {ids[1:][ids[1:] == ids[:-1]][0]} twice")
    check_vectors(files.join(folder, TableFiles.EMBEDDINGS), ids, vectors)
    for start in range(0, len(vectors), UNIT_BLOCK):  # in place, a block at a time: no second catalogue in memory
        vectors[start:start + UNIT_BLOCK] = unit(vectors[start:start + UNIT_BLOCK])
    _check_summary(folder, len(ids))
    catalogue = _read(folder, TableFiles.TRACKS, schemas.TRACKS_BEFORE_TAGS)
    catalogue = schemas.with_missing_columns(catalogue, schemas.TRACKS).sort_by("track_id")
    return Tables(folder=folder, ids=ids, vectors=vectors, catalogue=catalogue, model_id=model_id)
