"""Every playlist kind, declared once: its name, what it does, its parameters (type, default, limits, which name
tracks), the name of its score column and its function. The ``wavelist`` subcommand, the server's route with its
OpenAPI entry and the app's tab are built from :data:`KINDS`; a new kind is its function and one entry there
(docs/extending.md, "Adding a playlist kind"). :func:`playlists.service.make_playlist` checks the arguments
against the declaration, looks the tracks up and calls the function."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from playlists.alchemy import alchemy
from playlists.journey import journey_playlist
from playlists.profile import profile
from playlists.radio import like, radio
from schemas.errors import UserError

TRACK = "track"  # a parameter that names one track (an id, a title, ...: each front end says what it takes)
TRACKS = "tracks"  # a parameter that names tracks, in order
VARIETY_MAX = 0.99  # variety 1 would ignore similarity altogether


@dataclass(frozen=True)
class Shown:
    """How the app shows a parameter. A number is a slider (``low`` to ``high``, starting at ``default``), a flag
    a checkbox, a track a search box, tracks a search and a multi-select, starting with ``near``: tracks at these
    quantiles of the cosine to the selected track (0: the farthest, 0.5: a typical one) or ``"seed"``, the
    selected track itself."""

    label: str
    key: str = "{kind}-{name}"  # the widget's key (also what tests find it by)
    low: float | None = None
    high: float | None = None
    default: Any = None
    step: float | None = None
    near: tuple[float | str, ...] = ()
    lead: bool = False  # the selected track is listed first (similarity 1) and the kind asked for n - 1 more
    between: bool = False  # stops between the kind's first and last track: given, they become via = [first, ..., last]
    paste: str | None = None  # a text area (this label) where a track list may be pasted instead


@dataclass(frozen=True)
class Param:
    """One argument of a kind's function, as every front end takes it."""

    name: str  # the function's keyword
    type: Any  # int, float, bool, TRACK or TRACKS
    help: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    flag: str | None = None  # on the command line, when not --NAME (-n for n)
    query: str | None = None  # in an HTTP query, when not NAME
    cap: int | None = None  # the most an HTTP request may ask (a count whose work grows with it)
    selected: bool = False  # the track the app shows (or a player plays) fills it, or leads its list
    file: bool = False  # on the command line a FILE naming the tracks (playlists.history.read_history)
    shown: Shown | None = None  # in the app; None: not shown there (the default applies)

    @property
    def option(self) -> str:
        """The command-line flag."""
        return self.flag or ("-" + self.name if len(self.name) == 1 else "--" + self.name.replace("_", "-"))

    @property
    def query_name(self) -> str:
        return self.query or self.name

    def check(self, value: Any) -> None:
        """Raise :class:`UserError` naming the flag when ``value`` is outside the declared limits."""
        if value is None or self.type not in (int, float) or isinstance(value, bool):
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{self.option} must be a finite number, got {value}")
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            shown = f"{value:g}" if isinstance(value, float) else str(value)[:40]
            raise UserError(f"{self.option} must be {limits(low, high)}, got {shown}")


def limits(low: float | None, high: float | None) -> str:
    """``1 or more``, ``from 0 to 0.99``, ``10 or less``."""
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}"
    return f"{low:g} or more" if low is not None else f"{high:g} or less"


@dataclass(frozen=True)
class Kind:
    """A playlist kind. ``function(tables, **arguments)`` gets every parameter by name, tracks as catalogue ids,
    and returns the entries (:class:`playlists.radio.Entry`), or the entries and figures about them (a journey's
    smoothness)."""

    name: str  # the subcommand, the route (/NAME) and the app's tab
    help: str
    score: str  # the score column: what each entry's similarity is to
    function: Callable[..., Any]
    params: tuple[Param, ...]
    body: str | None = None  # the parameter an HTTP POST body may give, as a track list's text

    def check(self, arguments: dict[str, Any]) -> None:
        """Raise :class:`UserError` naming the flag for an argument outside its declared limits."""
        for param in self.params:
            param.check(arguments.get(param.name))


def count(default: int = 20, *, minimum: int = 1, cap: int | None = None, low: int = 5, high: int = 50,
          shown: int = 20) -> Param:
    """The playlist length ``n``; ``low``, ``high`` and ``shown`` are the app's slider."""
    return Param("n", int, "playlist length", default=default, minimum=minimum, cap=cap,
                 shown=Shown("Tracks", low=low, high=high, default=shown))


EXCLUDE_ARTIST = Param("exclude_artist", bool, "leave out the seeds' artists", default=False,
                       shown=Shown("Leave out the seeds' artists", key="{kind}-artist"))
VARIETY = Param("variety", float, "0 (most similar) to 0.99: trade similarity for variety (maximal marginal "
                "relevance)", default=0.0, minimum=0.0, maximum=VARIETY_MAX,
                shown=Shown("Variety (0 = most similar)", low=0.0, high=0.9, default=0.0, step=0.1))
CAP = Param("max_per_artist", int, "at most this many tracks of one artist", minimum=1)

KINDS: tuple[Kind, ...] = (
    Kind("radio", "nearest neighbours of one seed track", "to_seed", radio, (
        Param("seed", TRACK, "seed track", required=True, selected=True,
              shown=Shown("the selected track", lead=True)),
        count(), EXCLUDE_ARTIST, VARIETY, CAP)),
    Kind("like", "a playlist that blends several seed tracks", "to_seeds", like, (
        Param("seeds", TRACKS, "seeds", required=True, selected=True,
              shown=Shown("More seeds to blend with the selected track", near=(0.5,))),
        count(), EXCLUDE_ARTIST, VARIETY, CAP)),
    Kind("journey", "a smooth path of tracks from one track to another", "step", journey_playlist, (
        Param("start", TRACK, "first track", flag="--from", query="from", selected=True),
        Param("end", TRACK, "last track", flag="--to", query="to",
              shown=Shown("Journey to: search a track", key="to", near=(0.0,))),
        Param("via", TRACKS, "stops in order, first to last (instead of from and to)",
              shown=Shown("Stops on the way, in order", between=True)),
        Param("avoid", TRACKS, "tracks the journey must not use"),
        count(minimum=2, cap=200, low=3), CAP)),
    Kind("alchemy", "tracks nearest to the sum of some tracks minus others", "to_target", alchemy, (
        Param("add", TRACKS, "tracks whose sound to add", required=True, selected=True,
              shown=Shown("Add", near=(0.25,))),
        Param("subtract", TRACKS, "tracks whose sound to take away", shown=Shown("Subtract")),
        count(), VARIETY, CAP)),
    Kind("profile", "a playlist for a listener from the tracks they played", "to_profile", profile, (
        Param("history", TRACKS, "plays, oldest first", required=True, file=True,
              shown=Shown("Listening history, oldest play first", key="profile-plays", near=(0.5, "seed"),
                          paste="Track ids or audio paths, one a line, or an M3U: used instead of the tracks above")),
        count(50, high=100, shown=30),
        Param("half_life", float, "a play this many plays older counts half", default=20.0, minimum=1e-3),
        VARIETY, CAP), body="history"),
)


def find(name: str) -> Kind:
    """The kind called ``name``; ``ValueError`` for any other name."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise ValueError(f"unknown playlist kind {name!r}; choose one of {', '.join(k.name for k in KINDS)}")
