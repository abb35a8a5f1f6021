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
    assert len(app.get("plotly_chart")) == 1  # the open tab's map only
    assert len(app.get("download_button")) == 1
    assert len(app.get("audio")) >= 1 + 20  # the seed, then the radio's tracks


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
    assert "nowhere is not a folder" in at.error[0].value and not at.exception


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
    app.text_input(key="like-seeds-search").input(str(other[0])).run()
    app.multiselect(key="like-seeds").select(other[0]).run()
    assert _genres(app) >= {"Style2", "Style5"}

    open_tab(app, "Alchemy")
    app.text_input(key="alchemy-subtract-search").input(str(other[0])).run()
    app.multiselect(key="alchemy-subtract").select(other[0]).run()
    assert "Style5" not in _genres(app) and len(app.table[0].value) == 20

    open_tab(app, "Clusters")
    assert len(app.table[0].value) == 8 and float(app.metric[0].value) > 0.1
    assert len(app.table[1].value) > 0 and len(app.get("plotly_chart")) == 1

    open_tab(app, "Profile")
    app.text_area(key="profile-history").input("\n".join(str(i) for i in other)).run()
    genres = _column(app.table[0], "genre")
    assert len(genres) == 30 and genres.count("Style5") >= 24  # of about 35 Style5 tracks in all
