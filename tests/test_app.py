"""The Streamlit app, driven by Streamlit's own AppTest (the script runs in this process, no browser)."""
from pathlib import Path

import pytest

APP = str(Path(__file__).resolve().parents[1] / "wavelist" / "app.py")


@pytest.fixture(scope="module")
def tables_dir(tmp_path_factory):
    from playlists.synthetic import write_synthetic_tables

    return write_synthetic_tables(tmp_path_factory.mktemp("app"), 300, audio=True)


@pytest.fixture
def app(tables_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WAVELIST_TABLES", str(tables_dir))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def _column(table, name):
    return list(table.value[name])


def test_search_selects_plays_and_builds_a_radio(app, tables_dir):
    app.text_input(key="q").input("song 1042").run()
    assert app.selectbox(key="q-choice").value == 1042
    assert app.subheader[0].value.startswith("Song 1042 - Artist")
    radio_table = app.table[0]
    assert _column(radio_table, "track")[0] == 1042 and len(radio_table.value) == 20
    assert len(set(_column(radio_table, "track"))) == 20
    to_seed = [float(x) for x in _column(radio_table, "to_seed (cosine)")]  # the header says what the number is
    assert to_seed[0] == 1.0 and to_seed == sorted(to_seed, reverse=True)
    assert len(app.get("plotly_chart")) == 1  # the open tab's map only
    assert len(app.get("download_button")) == 1
    assert len(app.get("audio")) == 1  # the seed's own player
    assert player_sources(app) == [f"/audio/{i}" for i in _column(radio_table, "track")]


def player_sources(app) -> list[str]:
    """The audio URLs of the one playlist player, in order."""
    import re

    (frame,) = app.get("iframe")
    return re.findall(r'data-src="([^"]+)"', frame.proto.srcdoc)


def test_radio_options_leave_out_the_artist(app):
    app.text_input(key="q").input("song 1042").run()
    seed_artist = _column(app.table[0], "artist")[0]
    app.checkbox(key="radio-artist").check().run()
    assert seed_artist not in _column(app.table[0], "artist")[1:]


def open_tab(app, name):
    app.session_state["tab"] = name
    app.run()
    assert not app.exception, app.exception


def test_journey_runs_from_seed_to_destination(app):
    open_tab(app, "Journey")
    app.text_input(key="q").input("song 1003").run()
    app.text_input(key="to").input("song 1290").run()
    app.slider(key="journey-n").set_value(12).run()
    tracks = _column(app.table[0], "track")
    assert tracks[0] == 1003 and tracks[-1] == 1290 and len(tracks) == 12 and len(set(tracks)) == 12
    assert {m.label: m.value for m in app.metric}["steps forward"] == "100%"
    app.text_input(key="journey-via-search").input("1150").run()
    app.multiselect(key="journey-via").select(1150).run()
    tracks = _column(app.table[0], "track")
    assert tracks[0] == 1003 and 1150 in tracks and tracks[-1] == 1290 and len(tracks) == 12


def test_no_match_says_so(app):
    app.text_input(key="q").input("no such song").run()
    assert "No track matches 'no such song'" in app.warning[0].value
    assert not app.exception


def test_bad_tables_folder_is_an_error_on_the_page(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WAVELIST_TABLES", str(tmp_path / "nowhere"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert "The tables cannot be loaded: the catalogue is not a folder" in at.error[0].value and not at.exception
    assert str(tmp_path) not in at.error[0].value  # no server path on the page


def _genres(app, table=0):
    return set(_column(app.table[table], "genre"))


def test_like_alchemy_clusters_and_profile_tabs(app, tables_dir):
    from playlists import load_tables

    tables = load_tables(tables_dir)
    style = {int(i): g for i, g in zip(tables.ids, tables.column("genre"))}
    seed = next(i for i, g in style.items() if g == "Style2")
    other = [i for i, g in style.items() if g == "Style5"][:3]
    app.text_input(key="q").input(str(seed)).run()

    open_tab(app, "Like")
    app.multiselect(key="like-seeds").set_value([]).run()  # the seed alone, then with a Style5 track
    alone = _column(app.table[0], "genre").count("Style5")
    app.text_input(key="like-seeds-search").input(str(other[0])).run()
    app.multiselect(key="like-seeds").select(other[0]).run()
    assert _column(app.table[0], "genre").count("Style5") >= alone + 5 and "Style2" in _genres(app)

    open_tab(app, "Alchemy")
    app.multiselect(key="alchemy-add").set_value([]).run()
    app.text_input(key="alchemy-subtract-search").input(str(other[0])).run()
    app.multiselect(key="alchemy-subtract").select(other[0]).run()
    assert "Style5" not in _genres(app) and len(app.table[0].value) == 20

    open_tab(app, "Clusters")
    assert len(app.table[0].value) == 8 and float(app.metric[0].value) > 0.1
    assert len(app.table[1].value) > 0 and len(app.get("plotly_chart")) == 1

    open_tab(app, "Profile")
    app.multiselect(key="profile-plays").set_value(other).run()  # a history chosen by search
    genres = _column(app.table[0], "genre")
    assert len(genres) == 30 and genres.count("Style5") >= 24  # of about 35 Style5 tracks in all
    pasted = f"#EXTM3U\n{tables_dir / 'audio' / f'{seed}.wav'}\n"  # a pasted M3U replaces the tracks chosen
    app.text_area(key="profile-history").input(pasted).run()
    assert _column(app.table[0], "genre").count("Style2") >= 24


def test_each_tab_shows_what_it_does_on_first_view(app, tables_dir):
    """Defaults that differ from the radio: a far destination shown by title, a second seed to blend, a track
    from another cluster to add, a history of two plays."""
    from playlists import load_tables

    tables = load_tables(tables_dir)
    app.text_input(key="q").input("song 1042").run()
    radio_tracks = _column(app.table[0], "track")
    genre = tables.track(1042)["genre"]

    open_tab(app, "Journey")
    far = int(tables.ids[(tables.vectors @ tables.vector(1042)).argmin()])
    assert app.text_input(key="to").value == f"Song {far} {tables.track(far)['artist']}"  # words, not an id
    assert app.selectbox(key="to-choice").value == far and _column(app.table[0], "track")[-1] == far

    for tab, key in (("Like", "like-seeds"), ("Alchemy", "alchemy-add"), ("Profile", "profile-plays")):
        open_tab(app, tab)
        chosen = app.multiselect(key=key).value
        assert chosen and all(tables.track(t)["genre"] != genre for t in chosen if t != 1042), (tab, chosen)
        tracks = _column(app.table[0], "track")
        assert tracks != radio_tracks and len(set(tracks) - set(radio_tracks)) >= 5, tab
        assert tables.track(chosen[0])["genre"] in _genres(app), tab  # the playlist reaches the other style

    app.text_input(key="q").input("song 1100").run()  # a new seed: defaults chosen for it
    assert 1100 in app.multiselect(key="profile-plays").value


def test_audio_route_serves_catalogue_files_by_id_only(tables_dir, monkeypatch):
    import asyncio

    import httpx
    from starlette.applications import Starlette

    from wavelist.web_player import AUDIO_ROUTE, audio_url

    monkeypatch.setenv("WAVELIST_TABLES", str(tables_dir))

    async def ask() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=Starlette(routes=[AUDIO_ROUTE]))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return [await client.get(audio_url(1042)),
                    await client.get(audio_url(1042), headers={"Range": "bytes=0-99"}),  # the browser seeks so
                    await client.get(audio_url(5)),  # not a track of the tables
                    await client.get("/audio/..%2Ftracks.parquet")]  # ids only: no path reaches a file

    whole, part, unknown, path = asyncio.run(ask())
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/x-wav"
    assert whole.content == (tables_dir / "audio" / "1042.wav").read_bytes()
    assert part.status_code == 206 and part.content == whole.content[:100]
    assert unknown.status_code == 404 and path.status_code == 404


def test_player_escapes_titles_and_lists_tracks_in_order():
    from wavelist.web_player import player_html

    page = player_html([(7, 'A <script>alert(1)</script> "title"'), (3, "B & C")])
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &quot;title&quot;" in page
    assert page.index('data-src="/audio/7"') < page.index('data-src="/audio/3"') and "B &amp; C" in page
