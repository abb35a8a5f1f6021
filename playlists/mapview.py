"""The catalogue map: a self-contained interactive 3-D HTML page (plotly), coloured by genre."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from playlists.tables import Tables, TablesError
from schemas import tables as schemas


def write_map(tables: Tables, out: str | Path, playlist: list[int] | None = None, title: str = "wavelist map") -> Path:
    """Write ``out`` (HTML with plotly.js inlined); ``playlist`` track ids are drawn as a path."""
    import plotly.graph_objects as go

    path = tables.folder / "map3d.parquet"
    if not path.exists():
        raise TablesError(f"{path} is missing: is {tables.folder} an output of wavelist embed?")
    coords = pq.read_table(path)
    schemas.require_columns(coords.schema, schemas.MAP3D, what=str(path))
    points = {row["track_id"]: (row["x"], row["y"], row["z"]) for row in coords.to_pylist()}
    by_genre: dict[str, list[int]] = {}
    for track_id in points:
        by_genre.setdefault(tables.tracks.get(track_id, {}).get("genre") or "unknown", []).append(track_id)
    figure = go.Figure()
    for genre, ids in sorted(by_genre.items()):
        hover = [
            f"{i}: {tables.tracks.get(i, {}).get('title') or ''}<br>{tables.tracks.get(i, {}).get('artist') or ''}"
            f"<br>{genre}"
            for i in ids
        ]
        figure.add_trace(go.Scatter3d(
            x=[points[i][0] for i in ids], y=[points[i][1] for i in ids], z=[points[i][2] for i in ids],
            mode="markers", name=genre, text=hover, hoverinfo="text", marker={"size": 4},
        ))
    if playlist:
        figure.add_trace(go.Scatter3d(
            x=[points[i][0] for i in playlist], y=[points[i][1] for i in playlist],
            z=[points[i][2] for i in playlist], mode="lines+markers", name="playlist",
            line={"width": 6, "color": "black"}, marker={"size": 6, "color": "black"},
            text=[str(i) for i in playlist], hoverinfo="text",
        ))
    figure.update_layout(title=title, legend={"itemsizing": "constant"}, margin={"l": 0, "r": 0, "b": 0, "t": 40})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(out, include_plotlyjs=True, full_html=True)
    return out
