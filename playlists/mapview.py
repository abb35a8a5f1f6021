"""The catalogue map: a self-contained interactive 3-D HTML page (plotly), coloured by genre."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from playlists.tables import Tables, _read
from playlists.text import for_html
from schemas import tables as schemas
from schemas.layout import TableFiles

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


def map_figure(tables: Tables, playlist: list[int] | None = None, title: str = "wavelist map",
               highlight: int | None = None):
    """The 3-D map as a plotly figure: one trace per genre, hover with id, title, artist and genre;
    ``playlist`` track ids drawn as a path; ``highlight`` drawn as a large diamond."""
    import plotly.graph_objects as go

    xyz = coordinates(tables)
    genres = np.array([for_html(g or "unknown") for g in tables.column("genre")], dtype=object)
    titles = np.array([for_html(t or "") for t in tables.column("title")], dtype=object)
    artists = np.array([for_html(a or "") for a in tables.column("artist")], dtype=object)
    figure = go.Figure()
    for k, genre in enumerate(sorted(set(genres))):
        rows = np.flatnonzero((genres == genre) & ~np.isnan(xyz[:, 0]))
        hover = [f"{tables.ids[r]}: {titles[r] or ''}<br>{artists[r] or ''}<br>{genre}" for r in rows]
        figure.add_trace(go.Scatter3d(x=xyz[rows, 0], y=xyz[rows, 1], z=xyz[rows, 2], mode="markers", name=genre,
                                      text=hover, hoverinfo="text",
                                      marker={"size": 4, "color": GENRE_COLOURS[k % len(GENRE_COLOURS)]}))
    if playlist:
        rows = [tables.row(i) for i in playlist]
        figure.add_trace(go.Scatter3d(
            x=xyz[rows, 0], y=xyz[rows, 1], z=xyz[rows, 2], mode="lines+markers", name="playlist",
            line={"width": 6, "color": "black"}, marker={"size": 6, "color": "black"},
            text=[f"{k}. {i}: {titles[r] or ''}" for k, (i, r) in enumerate(zip(playlist, rows), start=1)],
            hoverinfo="text",
        ))
    if highlight is not None:
        r = tables.row(highlight)
        figure.add_trace(go.Scatter3d(x=[xyz[r, 0]], y=[xyz[r, 1]], z=[xyz[r, 2]], mode="markers", name="selected",
                                      text=[f"{highlight}: {titles[r] or ''}"], hoverinfo="text",
                                      marker={"size": 12, "color": "red", "symbol": "diamond"}))
    figure.update_layout(title=for_html(title), legend={"itemsizing": "constant"}, margin={"l": 0, "r": 0, "b": 0, "t": 40})
    return figure


def write_map(tables: Tables, out: str | Path, playlist: list[int] | None = None, title: str = "wavelist map") -> Path:
    """Write ``out`` (HTML with plotly.js inlined); ``playlist`` track ids are drawn as a path."""
    figure = map_figure(tables, playlist, title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(out, include_plotlyjs=True, full_html=True)
    return out
