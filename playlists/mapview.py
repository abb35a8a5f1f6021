"""The catalogue map: a self-contained interactive 3-D HTML page (plotly), coloured by genre."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from playlists.tables import Tables, _read
from playlists.text import for_html
from schemas import tables as schemas
from schemas.layout import TableFiles
from storage import files

# plotly's default palette, set on each genre's trace so the HTML map and the app colour genres alike
GENRE_COLOURS = ("#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880",
                 "#FF97FF", "#FECB52")


def coordinates(tables: Tables) -> np.ndarray:
    """[shape=(n, 3)] map3d.parquet's x, y, z for each row (NaN where the map lacks the track); read once."""
    if "map3d" not in tables._columns:
        coords = _read(tables.folder, TableFiles.MAP3D, schemas.MAP3D)
        rows = tables.rows_of(coords["track_id"].to_numpy())
        known = rows >= 0
        xyz = np.full((len(tables), 3), np.nan, dtype=np.float32)
        for axis, name in enumerate("xyz"):
            xyz[rows[known], axis] = coords[name].to_numpy()[known]
        tables._columns["map3d"] = xyz
    return tables._columns["map3d"]


def track_name(tables: Tables, track_id: int) -> str:
    """``artist - title`` of a track, for titles and hover text (not escaped)."""
    row = tables.row(track_id)
    artist, title = tables.column("artist")[row], tables.column("title")[row]
    return f"{artist or 'unknown artist'} - {title or track_id}"


def map_figure(tables: Tables, playlist: list[int] | None = None, title: str = "the catalogue by sound",
               highlight: int | None = None, path: bool = True):
    """The 3-D map as a plotly figure: one trace per genre, hover with artist - title, genre and id. ``playlist``
    track ids are drawn as numbered steps on a line with start and end markers (``path``: a journey), or as
    highlighted points without a line (a radio, a like: the order is not a way through the map); ``highlight``
    (the seed) as a large diamond."""
    import plotly.graph_objects as go

    xyz = coordinates(tables)
    genres = np.array([for_html(g or "unknown") for g in tables.column("genre")], dtype=object)
    names = np.array([for_html(f"{a or 'unknown artist'} - {t or i}") for i, a, t in
                      zip(tables.ids.tolist(), tables.column("artist"), tables.column("title"))], dtype=object)
    figure = go.Figure()
    for k, genre in enumerate(sorted(set(genres))):
        rows = np.flatnonzero((genres == genre) & ~np.isnan(xyz[:, 0]))
        hover = [f"{names[r]}<br>{genre}<br>track {tables.ids[r]}" for r in rows]
        figure.add_trace(go.Scatter3d(x=xyz[rows, 0], y=xyz[rows, 1], z=xyz[rows, 2], mode="markers", name=genre,
                                      text=hover, hoverinfo="text",
                                      marker={"size": 4, "color": GENRE_COLOURS[k % len(GENRE_COLOURS)]}))
    if playlist:
        rows = [tables.row(i) for i in playlist]
        hover = [f"{k}. {names[r]}" for k, r in enumerate(rows, start=1)]
        if path:
            figure.add_trace(go.Scatter3d(
                x=xyz[rows, 0], y=xyz[rows, 1], z=xyz[rows, 2], mode="lines+markers+text", name="playlist",
                line={"width": 6, "color": "black"}, marker={"size": 5, "color": "black"},
                text=[str(k) for k in range(1, len(rows) + 1)], textposition="top center",
                hovertext=hover, hoverinfo="text"))
            for name, at, colour, symbol in (("start", 0, "green", "diamond"), ("end", -1, "red", "square")):
                figure.add_trace(go.Scatter3d(
                    x=[xyz[rows[at], 0]], y=[xyz[rows[at], 1]], z=[xyz[rows[at], 2]], mode="markers", name=name,
                    hovertext=[f"{name}: {names[rows[at]]}"], hoverinfo="text",
                    marker={"size": 11, "color": colour, "symbol": symbol}))
        else:
            figure.add_trace(go.Scatter3d(
                x=xyz[rows, 0], y=xyz[rows, 1], z=xyz[rows, 2], mode="markers", name="playlist",
                marker={"size": 7, "color": "black", "line": {"width": 2, "color": "white"}},
                hovertext=hover, hoverinfo="text"))
    if highlight is not None:
        r = tables.row(highlight)
        figure.add_trace(go.Scatter3d(x=[xyz[r, 0]], y=[xyz[r, 1]], z=[xyz[r, 2]], mode="markers", name="seed",
                                      hovertext=[f"seed: {names[r]}"], hoverinfo="text",
                                      marker={"size": 12, "color": "red", "symbol": "diamond"}))
    bare = {"showticklabels": False, "title": {"text": ""}}  # t-SNE's units mean nothing
    figure.update_layout(title=for_html(title), legend={"itemsizing": "constant"},
                         scene={"xaxis": bare, "yaxis": bare, "zaxis": bare},
                         margin={"l": 0, "r": 0, "b": 0, "t": 40})
    return figure


def write_map(tables: Tables, out: str | Path, playlist: list[int] | None = None,
              title: str = "the catalogue by sound", path: bool = True) -> str:
    """Write ``out`` (one HTML file, plotly.js inlined, the full window; local or remote); ``playlist`` as in
    :func:`map_figure`."""
    figure = map_figure(tables, playlist, title, path=path)
    return files.write_text(out, figure.to_html(include_plotlyjs=True, full_html=True, default_width="100%",
                                                default_height="100vh"))
