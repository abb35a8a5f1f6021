"""The wavelist web app (Streamlit): search a track, see it on the 3-D map, play it, build a radio, a journey, a
blend, an alchemy, the catalogue's clusters or a listener's profile, play the tracks, download the M3U8.

    wavelist app --tables TABLES                               (or)
    WAVELIST_TABLES=TABLES streamlit run wavelist/app_server.py

(``app_server.py`` runs this script and adds the audio route that the playlist player plays from.)

The search text and the tab are kept in the page address (``?q=...&tab=Journey``), so a view can be shared.
"""
from __future__ import annotations

import functools
import mimetypes
import os

import numpy as np
import streamlit as st

from playlists import Entry, Tables, kinds
from playlists.discover import clusters
from playlists.mapview import map_figure
from playlists.output import m3u, parse_track_list, playlist_rows
from playlists.service import TrackFinder, make_playlist
from playlists.text import for_markdown
from wavelist.web_player import TABLES_VARIABLE, player_html, shared_finder, shared_tables

FIGURES = {"min_step_similarity": "weakest step (cosine)", "mean_step_similarity": "mean step (cosine)",
           "monotonic_fraction": "steps forward"}  # a journey's smoothness, as the page names it
PLAYER_HEIGHT = 380  # pixels: the buttons, the audio controls and about 12 tracks of the list (it scrolls)


@st.cache_resource(show_spinner="Loading the tables")
def _load(folder: str) -> Tables:
    return shared_tables(folder)  # the same copy the audio route reads


def finder() -> TrackFinder:
    """The track finder of the app's tables, shared with the audio route: it says which files may be played."""
    return shared_finder(os.environ[TABLES_VARIABLE])


def for_listener(message: object) -> str:
    """A message as a listener may see it: no server path (the tables and music folders are named, not shown),
    Markdown escaped (it may quote what was typed or put in the page's address)."""
    text = str(message)
    folder = os.environ.get(TABLES_VARIABLE)
    if folder:
        try:
            music = finder().music_folder
        except (OSError, ValueError, LookupError):  # the tables cannot be loaded
            music = None
        names = {folder: "the catalogue", os.path.realpath(folder): "the catalogue", music: "the music folder"}
        for path in sorted((p for p in names if p and p != os.sep), key=len, reverse=True):  # inner folders first
            text = text.replace(path, names[path])
    return for_markdown(text)


def label(tables: Tables, track_id: int) -> str:
    """``title - artist (genre) · id`` for lists and headings."""
    track = tables.track(track_id)
    return (f"{track.get('title') or track_id} - {track.get('artist') or 'unknown artist'} "
            f"({track.get('genre') or 'no genre'}) · {track_id}")


def search_words(tables: Tables, track_id: int) -> str:
    """What to type in a search box to find ``track_id``: its title and artist (its id when it has no title)."""
    track = tables.track(track_id)
    return " ".join(str(track[k]) for k in ("title", "artist") if track.get(k)) if track.get("title") else str(track_id)


def elsewhere(tables: Tables, seed: int, quantile: float) -> int:
    """A track from another part of the catalogue: the one at ``quantile`` of the cosines to ``seed`` (0: the
    farthest track, 0.5: a typical one), for defaults that differ from the seed."""
    similarity = tables.vectors @ tables.vector(seed)
    at = round(quantile * (len(similarity) - 1))
    return int(tables.ids[np.argpartition(similarity, at)[at]])


def pick_track(tables: Tables, text_label: str, key: str, default: int | None = None) -> int | None:
    """A search box (id, title or artist) and a list of the matching tracks; the chosen id, or None. The box
    starts with the words that find ``default``, and ``default`` is then the chosen track."""
    words = "" if default is None else search_words(tables, default)
    query = st.text_input(text_label, value=words, key=key, bind="query-params")
    matches = tables.search(query, limit=200)
    if default is not None and query == words:  # other tracks may share the words: the default comes first
        matches = [default, *(m for m in matches if m != default)][:200]
    if not matches:
        st.warning(f"No track matches {for_markdown(repr(query))}: try part of a title, an artist or an id.")
        return None
    count = f"{len(matches)}{'+' if len(matches) == 200 else ''}"
    return st.selectbox(f"{count} matching track{'' if len(matches) == 1 else 's'}", matches,
                        format_func=lambda i: label(tables, i), key=f"{key}-choice")


def play(tables: Tables, track_id: int) -> None:
    """An audio player for ``track_id``, or a note saying why there is none."""
    path = finder().audio_file(track_id)
    if path:
        st.audio(path, format=mimetypes.guess_type(path)[0] or "audio/mpeg")
    else:
        st.caption(f"no audio file here for track {track_id}")


def player(tables: Tables, ids: list[int]) -> None:
    """One player that plays the tracks of ``ids`` that have an audio file here, in order, one after another."""
    playable = [i for i in ids if finder().audio_file(i)]
    if len(playable) < len(ids):
        st.caption(f"{len(ids) - len(playable)} of {len(ids)} tracks have no audio file here: the player skips them")
    if playable:
        st.iframe(player_html([(i, label(tables, i)) for i in playable]), height=PLAYER_HEIGHT)


def show_playlist(tables: Tables, entries: list[Entry], *, name: str, seed: int, path: bool = False,
                  score: str = "similarity") -> None:
    """The playlist on the map (a line through numbered steps when ``path``: a journey; else highlighted
    points), as a table whose number column says what it measures (``score``, the kind's: cosine to the seed,
    step to step, ...), in a player, and as an M3U8 download."""
    ids = [e.track_id for e in entries]
    figure = map_figure(tables, ids, title=name, highlight=seed, path=path)
    figure.update_layout(height=650)
    st.plotly_chart(figure, key=f"map-{name}")
    rows = playlist_rows(tables, entries, score)
    st.table([{"#": k, "track": r["track_id"], "title": r["title"], "artist": r["artist"], "genre": r["genre"],
               f"{score} (cosine)": f"{r[score]:.4f}"} for k, r in enumerate(rows, start=1)], hide_index=True)
    music = finder().music_folder  # the paths hold on any machine with the same music folder
    st.download_button("Download M3U8", m3u(rows, relative_to=music), help="save it in your music folder", file_name=f"{name.replace(' ', '_')}.m3u8",
                       mime="audio/x-mpegurl", key=f"m3u-{name}")
    player(tables, ids)


def kind_options(tables: Tables, seed: int, kind: kinds.Kind) -> dict | None:
    """``make_playlist``'s arguments for ``kind`` from the controls its declaration asks for (:class:`Shown`): the
    selected track ``seed`` fills the kind's selected track or leads its list; None while a track is not chosen."""
    options = {}
    for param in kind.params:
        shown = param.shown
        if param.selected and param.type == kinds.TRACK:
            options[param.name] = seed
            continue
        if shown is None:
            continue
        key = shown.key.format(kind=kind.name, name=param.name)
        near = [seed if q == "seed" else elsewhere(tables, seed, q) for q in shown.near]
        if param.type == kinds.TRACK:
            value = pick_track(tables, shown.label, key=key, default=near[0] if near else None)
            if value is None:
                return None
        elif param.type == kinds.TRACKS:
            value = pick_tracks(tables, shown.label, key=key, seed=seed, default=tuple(near))
            if shown.paste:
                with st.expander(f"Or paste a {param.name}"):
                    text = st.text_area(shown.paste, key=f"{kind.name}-{param.name}")
                if text.strip():
                    value = parse_track_list(tables, text, source=f"the {param.name}")
            if param.selected:
                value = [seed, *value]
            if shown.between and value:  # stops between the kind's first and last track
                first, *_, last = [p.name for p in kind.params if p.type == kinds.TRACK]
                value = [options.pop(first), *value, options.pop(last)]
        elif param.type is bool:
            value = st.checkbox(shown.label, key=key)
        else:
            value = st.slider(shown.label, shown.low, shown.high, shown.default, shown.step, key=key)
        options[param.name] = value
    return options


def kind_tab(tables: Tables, seed: int, kind: kinds.Kind) -> None:
    """The tab of a playlist kind: its controls, then its playlist through ``make_playlist``, as the command's."""
    st.caption(f"{kind.help[0].upper()}{kind.help[1:]}.")
    lead = any(p.selected and p.shown and p.shown.lead for p in kind.params)
    try:
        options = kind_options(tables, seed, kind)
        if options is None:
            return
        if lead:  # the selected track first, then n - 1 more
            options["n"] -= 1
        playlist = make_playlist(tables, kind.name, **options)
    except (ValueError, LookupError) as error:
        st.warning(for_listener(error))
        return
    if playlist.smoothness is not None:
        for column, (figure, value) in zip(st.columns(len(playlist.smoothness)), playlist.smoothness.items()):
            shown = f"{value:.0%}" if figure.endswith("fraction") else f"{value:.3f}"
            column.metric(FIGURES.get(figure, figure), shown)
    entries = [Entry(seed, 1.0)] * lead + playlist.entries
    show_playlist(tables, entries, name=f"{kind.name} {seed}", seed=seed, path=playlist.smoothness is not None,
                  score=kind.score)


def pick_tracks(tables: Tables, text_label: str, key: str, seed: int, default: tuple[int, ...] = ()) -> list[int]:
    """A search box and a multi-select of its matches (kept across searches); the chosen ids. It starts with
    ``default``, and again whenever the seed changes (the defaults are chosen for the seed)."""
    if st.session_state.get(f"{key}-seed") != seed:
        st.session_state[key] = list(default)
        st.session_state[f"{key}-seed"] = seed
    query = st.text_input(f"{text_label}: search", key=f"{key}-search")
    chosen = st.session_state.get(key, [])
    options = list(dict.fromkeys(chosen + tables.search(query, limit=100)))
    return st.multiselect(text_label, options, format_func=lambda i: label(tables, i), key=key)


@st.cache_data(show_spinner="Clustering the catalogue")
def _clusters(folder: str, k: int) -> tuple[list, float]:
    return clusters(_load(folder), k)


def clusters_tab(tables: Tables, seed: int) -> None:
    k = st.slider("Playlists", 2, min(30, len(tables) - 1), min(8, len(tables) - 1), key="clusters-k")
    found, silhouette = _clusters(str(tables.folder), k)
    st.metric("silhouette (cosine)", f"{silhouette:.3f}")
    st.table([{"cluster": c.number, "name": c.name, "tracks": len(c.entries), "coherence": f"{c.coherence:.3f}",
               "genre share": f"{c.genre_share:.2f}"} for c in found], hide_index=True)
    chosen = st.selectbox("Play a cluster", found, format_func=lambda c: c.name, key="clusters-choice")
    show_playlist(tables, chosen.entries, name=f"cluster {chosen.number}", seed=chosen.central_track)


def main() -> None:
    st.set_page_config(page_title="wavelist", layout="wide")
    st.title("wavelist")
    folder = os.environ.get(TABLES_VARIABLE)
    if not folder:
        st.error("No tables: start the app with `wavelist app --tables TABLES`.")
        st.stop()
    try:
        tables = _load(folder)
    except (OSError, ValueError, LookupError) as error:
        st.error(f"The tables cannot be loaded: {for_listener(error)}")
        st.stop()
    st.caption(f"{len(tables):,} tracks")  # no server path or model id: this page is for a listener
    seed = pick_track(tables, "Search a track (title, artist or id)", key="q")
    if seed is None:
        st.stop()
    st.subheader(for_markdown(label(tables, seed)))
    play(tables, seed)
    shows = {kind.name.capitalize(): functools.partial(kind_tab, kind=kind) for kind in kinds.KINDS}
    shows["Clusters"] = clusters_tab
    for tab, show in zip(st.tabs(list(shows), key="tab", bind="query-params"), shows.values()):
        if tab.open is not False:  # only the open tab's playlist is built and drawn
            with tab:
                show(tables, seed)


main()
