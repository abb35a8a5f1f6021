"""Catalogue readers (FMA layout, any folder, a labels CSV) and the stable train/validation/test split.
Pure code: no Beam, no TensorFlow."""
from __future__ import annotations

import csv
import hashlib
import os
import posixpath
from typing import Any, Iterable, Mapping, TextIO

import pandas as pd

from core.identity import copy_ids, fma_layout_id
from schemas.errors import UserError
from schemas.flags import shown
from schemas.layout import SPLITS
from storage.text_files import UserText

FMA_SPLIT_NAMES = {"training": "train", "validation": "validation", "test": "test"}
FMA_SUBSETS = ("small", "medium", "large")
FMA_TRACKS_CSV = "tracks.csv"  # in FMA's fma_metadata folder
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
AUDIO_EXTENSIONS = (".mp3", ".ogg", ".oga", ".opus", ".flac", ".wav", ".aif", ".aiff", ".m4a")
TAG_LABELS = ("album", "album_artist", "track_number", "musicbrainz_recording_id", "musicbrainz_artist_id",
              "musicbrainz_album_id")  # what a file's tags also give (core.tags); a labels CSV value wins
LABEL_COLUMNS = ("track_id", "genre", "artist_id", "artist", "title", *TAG_LABELS)
INTEGER_LABELS = ("track_id", "artist_id", "track_number")
MAX_TRACK_NUMBER = 99_999

TrackRow = dict[str, Any]
Labels = Mapping[str, dict[str, Any]] | list[tuple[str, dict[str, Any]]]
GLOB_CHARACTERS = "*?["


class CatalogueError(UserError):
    """A catalogue that cannot be read as given."""


def stable_split(key: str, fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> str:
    """``train``, ``validation`` or ``test`` from a SHA-1 of ``key``: the same on every machine and run."""
    bucket = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2**64
    if bucket < fractions[0]:
        return SPLITS[0]
    if bucket < fractions[0] + fractions[1]:
        return SPLITS[1]
    return SPLITS[2]


def _ascii_digits(text: str) -> bool:
    """Only 0-9 (``str.isdigit`` also accepts characters such as '²' that ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def hash_id(key: str) -> int:
    """A positive 63-bit id from a SHA-1 of ``key``: stable across machines and runs (a file name that is not
    UTF-8, decoded by Python with surrogate escapes, hashes its raw bytes)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()[:8], "big") >> 1


def safe_text(text: str) -> str:
    """``text`` as valid UTF-8: the bytes of a file name that is not UTF-8 (which Python holds as surrogate
    escapes) written as ``\\xNN``, so tables, messages and logs can show it."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def glob_root(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: ``music/**/*.flac`` -> ``music``."""
    cut = min((i for i in (pattern.find(c) for c in GLOB_CHARACTERS) if i >= 0), default=len(pattern))
    return pattern[:cut].rsplit("/", 1)[0] if cut < len(pattern) else pattern.rstrip("/")


def escape_glob(path: str) -> str:
    """``path`` with its wildcard characters escaped, so a folder named ``music [live]`` matches itself."""
    return "".join(f"[{c}]" if c in GLOB_CHARACTERS else c for c in path)


def walk_audio_folder(root: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Audio files under the local folder ``root``, taken literally (no glob), links followed once.

    Returns (paths, rejects): a link that resolves to nothing or loops is a ``read`` reject; a linked folder
    already walked (a loop) is not walked twice.
    """
    paths: list[str] = []
    rejects: list[dict[str, Any]] = []
    seen_folders: set[str] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        real = os.path.realpath(folder)
        if real in seen_folders:
            continue
        seen_folders.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:
            rejects.append(_reject(folder, root, "read", f"folder cannot be read ({error.strerror})"))
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links
                exists = is_dir or entry.is_file()
            except OSError as error:  # a link loop (ELOOP) or a name the system refuses
                is_dir, exists = False, False
                broken = f"link cannot be followed ({error.strerror})"
            else:
                broken = "link leads nowhere (the file it names does not exist)"
            if is_dir:
                pending.append(entry.path)
            elif exists and is_audio_path(entry.name):
                paths.append(entry.path)
            elif not exists and entry.is_symlink() and is_audio_path(entry.name):
                rejects.append(_reject(entry.path, root, "read", broken))
    return sorted(paths), rejects


def _reject(path: str, root: str, stage: str, reason: str, track_id: int | None = None) -> dict[str, Any]:
    relative = path[len(root.rstrip("/")) + 1:] if path.startswith(root.rstrip("/") + "/") else path
    return {"track_id": track_id_for(relative) if track_id is None else track_id, "path": safe_text(path),
            "stage": stage, "reason": reason}


def split_for(track_id: int, artist_id: int | None = None, artist: str | None = None) -> str:
    """The split of a track without an official one: by its artist when known, so that an artist's
    tracks stay together, else by the track."""
    if artist_id is not None:
        return stable_split(f"artist:{artist_id}")
    if artist:
        return stable_split(f"artist-name:{artist}")
    return stable_split(f"track:{track_id}")


def fma_audio_path(audio_dir: str, track_id: int) -> str:
    """FMA's layout: track 2 -> ``AUDIO_DIR/000/000002.mp3``."""
    name = f"{track_id:06d}"
    return posixpath.join(audio_dir.rstrip("/"), name[:3], f"{name}.mp3")


def _column(table: pd.DataFrame, top: str, sub: str, *, required: bool, source: str) -> pd.Series | None:
    if (top, sub) in table.columns:
        return table[(top, sub)]
    if required:
        raise CatalogueError(f"{source} has no column ({top!r}, {sub!r}); is it FMA's tracks.csv?")
    return None


def read_fma_tracks(
    tracks_csv: str | TextIO, *, audio_dir: str, subset: str = "small", source: str = "tracks.csv"
) -> list[TrackRow]:
    """Rows of FMA's ``tracks.csv`` (two-row header, index ``track_id``) for ``subset`` and smaller.

    Uses FMA's own ``('set', 'split')`` when present (it keeps each artist in one split), otherwise a
    stable hash of the artist id, or of the track id when the artist is unknown.
    """
    if subset not in FMA_SUBSETS:
        raise CatalogueError(f"unknown FMA subset {subset!r}; choose one of {', '.join(FMA_SUBSETS)}")
    try:
        # every cell as text, and only an empty cell is missing: a title "NA" or a genre "007" stays as written
        table = pd.read_csv(tracks_csv, index_col=0, header=[0, 1], dtype=str, keep_default_na=False,
                            na_values=[""])
    except (ValueError, pd.errors.ParserError) as error:
        raise CatalogueError(f"{source} is not an FMA tracks.csv with a two-row header: {error}") from error
    try:
        track_ids = table.index.astype("int64")
    except (TypeError, ValueError) as error:
        raise CatalogueError(f"{source}: track ids must be integers ({error})") from error

    subsets = _column(table, "set", "subset", required=False, source=source)
    if subsets is not None:
        allowed = set(FMA_SUBSETS[: FMA_SUBSETS.index(subset) + 1])
        keep = subsets.isin(allowed).to_numpy()
        table, track_ids = table[keep], track_ids[keep]

    genre = _column(table, "track", "genre_top", required=True, source=source)
    title = _column(table, "track", "title", required=False, source=source)
    artist_id = _column(table, "artist", "id", required=False, source=source)
    artist = _column(table, "artist", "name", required=False, source=source)
    split = _column(table, "set", "split", required=False, source=source)

    def text(series: pd.Series | None, i: int) -> str | None:
        if series is None:
            return None
        value = series.iloc[i]
        return None if pd.isna(value) else str(value)

    def integer(series: pd.Series | None, i: int, what: str) -> int | None:
        value = text(series, i)
        try:  # "12.0" too: pandas writes an integer column with gaps as floats
            return None if value is None else int(value) if _ascii_digits(value.strip().lstrip("-")) else int(
                _whole(float(value)))
        except ValueError:
            raise CatalogueError(f"{source}: track {track_ids[i]} has {what} {value!r}, not an integer") from None

    rows = []
    for i, track_id in enumerate(track_ids):
        artist_value = integer(artist_id, i, "artist id")
        fma_split = text(split, i)
        if fma_split is not None and fma_split not in FMA_SPLIT_NAMES:
            raise CatalogueError(f"{source}: track {track_id} has unknown split {fma_split!r}")
        rows.append(
            {
                "track_id": int(track_id),
                "path": fma_audio_path(audio_dir, int(track_id)),
                "genre": text(genre, i),
                "artist_id": artist_value,
                "artist": text(artist, i),
                "title": text(title, i),
                "split": FMA_SPLIT_NAMES[fma_split] if fma_split is not None
                else split_for(int(track_id), artist_value),
            }
        )
    return rows


def _whole(value: float) -> float:
    if not value.is_integer():
        raise ValueError(value)
    return value


def is_audio_path(path: str) -> bool:
    return path.lower().endswith(AUDIO_EXTENSIONS)


def track_id_for(relative_path: str) -> int:
    """The id of a file known by its path alone: a file in FMA's own layout (``000/000002.mp3``) keeps its number,
    any other path gets a hash of it. Tracks of a folder take their ids from their audio instead
    (:func:`assign_ids`); this id is for what has no audio to read (rejects, a labels row naming no file)."""
    number = fma_layout_id(relative_path)
    return hash_id(relative_path) if number is None else number


def read_labels(handle: TextIO, *, source: str = "labels.csv") -> list[tuple[str, dict[str, Any]]]:
    """Rows of a labels CSV as (path, values), in file order; ``path`` is as written (relative to the audio
    folder, absolute, or a file name) less a leading ``./``. A file listed twice is kept twice here: the
    catalogue rejects the second as a duplicate.

    Optional columns: :data:`LABEL_COLUMNS` (``track_id``, ``genre``, ``artist_id``, ``artist``, ``title``,
    ``album``, ``album_artist``, ``track_number`` and the MusicBrainz recording, artist and album ids); others
    are ignored.
    """
    text = UserText(handle, source)

    def too_long(number: int) -> None:
        raise CatalogueError(f"{source} line {number}: longer than {text.limit:,} characters; is it a labels CSV?")

    reader = csv.reader(text.lines(too_long))
    header: list[str] | None = None
    labels: list[tuple[str, dict[str, Any]]] = []
    while True:
        line = text.line + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:  # a field over 131,072 characters (csv.field_size_limit), an unclosed quote
            raise CatalogueError(f"{source} line {line}: not CSV ({error}; an unclosed quote?)") from None
        if not cells:
            continue
        if header is None:
            header = cells
            if "path" not in header:
                raise CatalogueError(f"{source} needs a 'path' column (found {[shown(c) for c in header[:20]]})")
            continue
        row = dict(zip(header, cells))
        values: dict[str, Any] = {k: (row.get(k) or "").strip() or None for k in LABEL_COLUMNS}
        for key in INTEGER_LABELS:
            if values[key] is not None:
                number = values[key][1:] if values[key][:1] in "+-" else values[key]
                if not number.isdecimal() or len(number.lstrip("0")) > 19 or not -2**63 <= int(values[key]) < 2**63:
                    raise CatalogueError(f"{source} line {line}: {key} {values[key][:40]!r} is not an integer (of "
                                         "64 bits)")
                values[key] = int(values[key])
        if values["track_number"] is not None and not 0 < values["track_number"] <= MAX_TRACK_NUMBER:
            raise CatalogueError(f"{source} line {line}: track_number {values['track_number']} is not between 1 and "
                                 f"{MAX_TRACK_NUMBER:,}")
        path = (row.get("path") or "").strip()
        while path.startswith("./"):
            path = path[2:]
        if not path:
            raise CatalogueError(f"{source} line {line}: empty path")
        if "\x00" in path:
            raise CatalogueError(f"{source} line {line}: the path holds a NUL character, which no file name can")
        labels.append((path, values))
    if header is None:
        raise CatalogueError(f"{source} needs a 'path' column (it is empty)")
    return labels


def label_path(path: str, root: str) -> str | None:
    """The path relative to ``root`` that a labels CSV entry names, normalised (``sub/../a.wav`` -> ``a.wav``);
    ``None`` when it lies outside ``root``. Decided on the text alone: an entry outside is never opened."""
    root = root.rstrip("/")
    remote = "://" in root
    if path.startswith("/") or "://" in path:
        if remote:
            inside = path.startswith(root + "/")
            return posixpath.normpath(path[len(root) + 1:]) if inside else None
        real_root = os.path.realpath(root)
        absolute = os.path.normpath(path)
        for base in (os.path.abspath(root), real_root):
            if absolute.startswith(base.rstrip("/") + "/"):
                return absolute[len(base.rstrip("/")) + 1:]
        return None
    relative = posixpath.normpath(path)
    return None if relative == ".." or relative.startswith("../") or relative == "." else relative


def folder_tracks(paths: Iterable[str], *, root: str, labels: Labels | None = None,
                  keep_unmatched_labels: bool = True) -> tuple[list[TrackRow], list[dict[str, Any]]]:
    """Rows for audio files under ``root`` (local or gs://), labelled from ``labels`` where it names them,
    and rejects (stage ``catalogue``) for labels outside ``root`` and files listed or linked twice.

    A file is looked up in ``labels`` by its path relative to ``root``, then by its file name. A labels
    row that names no file still becomes a row (its path under ``root``), so that ingest rejects it as
    not found instead of losing it silently (unless ``keep_unmatched_labels`` is false: a glob may
    select only some of the labelled files on purpose). A local file is known by its real path (links
    resolved): the second name of a file already listed is a ``duplicate`` reject.
    """
    root = root.rstrip("/") + "/"
    entries = list(labels.items()) if isinstance(labels, Mapping) else list(labels or [])
    rejects: list[dict[str, Any]] = []
    by_path: dict[str, dict[str, Any]] = {}
    first_named: dict[str, str] = {}
    for written, values in entries:
        relative = label_path(written, root)
        if relative is None:
            rejects.append(_reject(written, root, "catalogue", "outside the audio folder (labels CSV path)",
                                   values.get("track_id") or hash_id(written)))
        elif relative in by_path:
            rejects.append(_reject(root + relative, root, "catalogue",
                                   f"duplicate: the labels CSV lists this file twice (first as {first_named[relative]!r})",
                                   values.get("track_id")))
        else:
            by_path[relative], first_named[relative] = values, written
    used: set[str] = set()
    rows = []
    for path in sorted(p for p in paths if is_audio_path(p)):
        relative = path[len(root):] if path.startswith(root) else posixpath.basename(path)
        key = relative if relative in by_path else posixpath.basename(path)
        label = by_path.get(key) or {}
        if label:
            used.add(key)
        rows.append(_folder_row(path, relative, label))
    for key in sorted(set(by_path) - used) if keep_unmatched_labels else ():
        rows.append(_folder_row(root + key, key, by_path[key]))
    return _drop_same_files(rows, rejects)


def real_path(path: str) -> str | None:
    """The file the local ``path`` leads to, links followed, where that differs from ``path`` made absolute
    (shown escaped where it is not UTF-8); None where it is the same, and for a URL."""
    if "://" in path:
        return None
    real = os.path.realpath(path)
    return safe_text(real) if real != os.path.abspath(path) else None


def readable_path(row: TrackRow) -> str:
    """The path to open for ``row``: ``path``, or the name ``source`` keeps when it is not UTF-8."""
    return os.fsdecode(bytes.fromhex(row["source"])) if row.get("source") else row["path"]


def _drop_same_files(rows: list[TrackRow], rejects: list[dict[str, Any]]) -> tuple[list[TrackRow], list[dict[str, Any]]]:
    """Keep one row of each local file (by real path): the file under its own name rather than a link to it,
    else the first; the others become ``duplicate`` rejects."""
    by_file: dict[str, list[TrackRow]] = {}
    for row in rows:
        path = readable_path(row)
        by_file.setdefault(path if "://" in path else os.path.realpath(path), []).append(row)
    kept = []
    for real, named in by_file.items():
        own = [r for r in named if os.path.abspath(readable_path(r)) == real]
        first = own[0] if own else named[0]
        kept.append(first)
        rejects += [{"track_id": r["track_id"] if r["track_id"] is not None else hash_id(r["path"]), "path": r["path"],
                     "stage": "catalogue",
                     "reason": f"duplicate: the same file as {first['path']}"} for r in named if r is not first]
    return kept, rejects


def _folder_row(path: str, relative: str, label: dict[str, Any]) -> TrackRow:
    """A catalogue row; ``path`` is shown escaped where the file name is not UTF-8, and ``source`` then keeps
    the name to open (see :func:`readable_path`). Its ``track_id`` is the labels CSV's, else the number of a
    file in FMA's layout, else None until :func:`assign_ids` gives it the id of its audio."""
    track_id = label["track_id"] if label.get("track_id") is not None else fma_layout_id(relative)
    shown = safe_text(path)
    return {  # the name's raw bytes in hex: a runner's coders take only valid UTF-8 text
        **({"source": os.fsencode(path).hex()} if shown != path else {}),
        "track_id": None if track_id is None else int(track_id),
        "path": shown,
        "genre": label.get("genre"),
        "artist_id": label.get("artist_id"),
        "artist": label.get("artist"),
        "title": label.get("title"),  # else the tags' title, else the file name (with_tags)
        **{k: label.get(k) for k in TAG_LABELS},  # else the tags' (with_tags)
        "split": None if track_id is None and label.get("artist_id") is None and not label.get("artist")
        else split_for(int(track_id or 0), label.get("artist_id"), label.get("artist")),  # by artist, else by id
    }


def assign_ids(rows: list[TrackRow], *, taken: set[int] | frozenset[int] = frozenset()) -> list[TrackRow]:
    """``rows`` (from :func:`folder_tracks`, each with its ``audio_identity``, None where the file could not be
    read) with a track id and split for each that has none yet: the id of its audio
    (:func:`core.identity.copy_ids`: the files of one audio numbered in path order, each its own id, none of
    ``taken``, the ids that ``wavelist update`` keeps), or for an unreadable file the hash of its path (ingest
    rejects it)."""
    taken = set(taken) | {row["track_id"] for row in rows if row["track_id"] is not None}
    by_identity: dict[str, list[str]] = {}
    for row in rows:
        if row["track_id"] is None and row.get("audio_identity"):
            by_identity.setdefault(row["audio_identity"], []).append(row["path"])
    ids: dict[str, int] = {}
    for identity, paths in by_identity.items():
        ids.update(copy_ids(identity, paths, taken))
    assigned = []
    for row in rows:
        if row["track_id"] is None:
            track_id = ids.get(row["path"]) or hash_id(row["path"])
            row = {**row, "track_id": track_id, "split": row.get("split") or split_for(track_id)}
        assigned.append(row)
    return assigned


def with_tags(row: TrackRow, tags: Mapping[str, Any]) -> TrackRow:
    """``row`` completed from the file's ``tags`` (core.tags.read_tags): a value the row holds (from FMA's
    tracks.csv or a labels CSV) wins; a title still missing is the file name; an artist without an id gets
    one from its name (stable across runs and machines)."""
    merged = {**row, **{k: v for k, v in tags.items() if row.get(k) is None}}
    merged["title"] = merged.get("title") or posixpath.splitext(posixpath.basename(row["path"]))[0]
    if merged.get("artist_id") is None and merged.get("artist"):
        merged["artist_id"] = artist_id_for(merged["artist"])
    return merged


def artist_id_for(name: str) -> int:
    """A stable id for an artist known by name only (case and surrounding spaces ignored)."""
    return hash_id("artist:" + " ".join(name.split()).casefold())


def drop_duplicate_ids(rows: list[TrackRow]) -> tuple[list[TrackRow], list[dict[str, Any]]]:
    """Keep the first row of each track id; the others become rejects (stage ``catalogue``)."""
    kept: dict[int, TrackRow] = {}
    rejects = []
    for row in rows:
        first = kept.get(row["track_id"])
        if first is None:
            kept[row["track_id"]] = row
        else:
            rejects.append({"track_id": row["track_id"], "path": row["path"], "stage": "catalogue",
                            "reason": f"duplicate track id {row['track_id']} (first at {first['path']})"})
    return list(kept.values()), rejects
