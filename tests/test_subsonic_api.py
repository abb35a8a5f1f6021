"""``wavelist serve``'s OpenSubsonic side, asked by a real OpenSubsonic client (py-opensonic, imported as
``libopensonic``, with its default settings: form POSTs to ``/rest/METHOD.view`` with token authentication) and over
plain HTTP (httpx). Every JSON answer is validated against the spec's own JSON schemas (tests/opensubsonic: the
spec's files at the commit its SOURCE names), every XML answer parsed."""
from __future__ import annotations

import functools
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import libopensonic
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.test_serve import NASTY_TITLE, Server, mbid, write_tables
from wavelist.cli import main

SPEC = Path(__file__).with_name("opensubsonic") / "openapi"
NAMESPACE = "{http://subsonic.org/restapi}"
CONTROL_TITLE = "Bell\x07 and \x1b[2J escape"  # control characters that XML 1.0 cannot hold
AUTH = {"u": "listener", "t": "0" * 32, "s": "salt01", "v": "1.16.1", "c": "wavelist-tests"}


# ---------------------------------------------------------------------------------------------------------------
# The spec's schemas


def _load(uri: str) -> Resource:
    return Resource.from_contents(json.loads(Path(uri.removeprefix("file://")).read_text()),
                                  default_specification=DRAFT202012)


@functools.cache
def _registry() -> Registry:
    return Registry(retrieve=_load)


def response_schema(method: str) -> str:
    """The URI of the JSON schema of ``method``'s answers, as the spec's endpoint file names it (GET, 200)."""
    endpoint = SPEC / "endpoints" / f"{method}.json"
    response = json.loads(endpoint.read_text())["get"]["responses"]["200"]
    base = endpoint.parent
    if "$ref" in response:  # a shared response (ping's EmptySubsonicResponse)
        target = (base / response["$ref"]).resolve()
        response, base = json.loads(target.read_text()), target.parent
    return (base / response["content"]["application/json"]["schema"]["$ref"]).resolve().as_uri()


def validate(method: str, answer: dict) -> None:
    Draft202012Validator({"$ref": response_schema(method)}, registry=_registry()).validate(answer)


def spec_default(method: str, parameter: str) -> int:
    params = json.loads((SPEC / "endpoints" / f"{method}.json").read_text())["get"]["parameters"]
    return next(p["schema"]["default"] for p in params if p["name"] == parameter)


def test_the_schemas_refuse_what_the_draft_answered():
    """The vendored schemas are strict where it matters: the draft's nesting and flat songs do not validate."""
    head = {"status": "ok", "version": "1.16.1", "type": "x", "serverVersion": "1", "openSubsonic": True}
    with pytest.raises(Exception, match="sonicMatch"):
        validate("getSonicSimilarTracks", {"subsonic-response": {**head, "sonicSimilarTracksResult": {
            "sonicMatch": [{"id": "1", "distance": 0.1}]}}})
    with pytest.raises(Exception):
        validate("getSonicSimilarTracks", {"subsonic-response": {**head, "sonicMatch": [
            {"id": "1", "title": "t", "isDir": False, "similarity": 0.5}]}})
    validate("getSonicSimilarTracks", {"subsonic-response": {**head, "sonicMatch": [
        {"entry": {"id": "1", "title": "t", "isDir": False}, "similarity": 0.5}]}})


# ---------------------------------------------------------------------------------------------------------------
# A server and a client


@pytest.fixture(scope="module")
def tables_dir(tmp_path_factory) -> Path:
    folder = write_tables(tmp_path_factory.mktemp("subsonic-api") / "tables", seed=0, model_id="synthetic-a")
    tracks = pq.read_table(folder / "tracks.parquet")
    titles = [CONTROL_TITLE if i == 1005 else t for i, t in zip(tracks["track_id"].to_pylist(),
                                                                  tracks["title"].to_pylist())]
    pq.write_table(tracks.set_column(tracks.schema.get_field_index("title"), "title", pa.array(titles)),
                   folder / "tracks.parquet")
    return folder


@pytest.fixture(scope="module")
def server(tables_dir, tmp_path_factory):
    server = Server(tables_dir, tmp_path_factory.mktemp("subsonic-api-log") / "server.log", "--watch-seconds", "0")
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def opensonic(server):
    """py-opensonic's synchronous client with its defaults (POST form data, ``.view``, token authentication)."""
    connection = libopensonic.Connection("http://127.0.0.1", "listener", "secret", port=server.port)
    yield connection
    connection.cleanup()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def cli_ids(capsys, *argv: str) -> list[int]:
    assert main([*argv, "--format", "json"]) == 0
    return [row["track_id"] for row in json.loads(capsys.readouterr().out)]


# ---------------------------------------------------------------------------------------------------------------
# py-opensonic


def test_the_client_finds_both_extensions(opensonic):
    extensions = {e.name: e.versions for e in opensonic.get_open_subsonic_extensions()}
    assert extensions["sonicSimilarity"] == [1] and extensions["formPost"] == [1]
    assert opensonic.ping() is True
    assert opensonic.get_license()["license"]["valid"] is True


def test_similar_tracks_are_the_radio(opensonic, tables_dir, capsys):
    matches = opensonic.get_sonic_similar_tracks("1010")
    assert len(matches) == spec_default("getSonicSimilarTracks", "count") == 10
    ids = [int(m.entry.id) for m in matches]
    assert ids == cli_ids(capsys, "radio", "--tables", str(tables_dir), "--seed", "1010", "-n", "10")
    assert 1010 not in ids
    scores = [m.similarity for m in matches]
    assert scores == sorted(scores, reverse=True) and all(0 <= s < 1 for s in scores)
    first = matches[0].entry
    assert first.title == f"Song {first.id}" and first.path == f"{first.id}.wav" and first.suffix == "wav"
    assert first.is_dir is False and first.type == "music" and first.duration == 30
    assert first.artist.startswith("Artist ") and first.genre.startswith("Style")
    assert first.music_brainz_id == mbid(int(first.id))
    for name in ("1010.wav", mbid(1010)):  # a song named by its path or its MusicBrainz id
        assert [int(m.entry.id) for m in opensonic.get_sonic_similar_tracks(name, count=5)] == ids[:5]


def test_sonic_path_runs_from_the_start_song_to_the_end_song(opensonic, tables_dir, capsys):
    path = opensonic.find_sonic_path("1000", "1399")
    ids = [int(m.entry.id) for m in path]
    assert len(ids) == spec_default("findSonicPath", "count") == 25
    assert ids[0] == 1000 and ids[-1] == 1399 and len(set(ids)) == len(ids)
    assert ids == cli_ids(capsys, "journey", "--tables", str(tables_dir), "--from", "1000", "--to", "1399", "-n", "25")
    assert path[0].similarity == 1.0 and all(0 <= m.similarity < 1 for m in path[1:])
    assert path[-1].entry.title == NASTY_TITLE
    short = [int(m.entry.id) for m in opensonic.find_sonic_path("1000", "1399", count=6)]
    assert short[0] == 1000 and short[-1] == 1399 and len(short) == 6
    assert [int(m.entry.id) for m in opensonic.find_sonic_path("1000", "1000")] == [1000]


def test_failures_reach_the_client_as_subsonic_errors(opensonic):
    """HTTP 200 with the error in the envelope: py-opensonic raises on any other status before reading it."""
    with pytest.raises(libopensonic.errors.DataNotFoundError, match="track 999999 is not in"):
        opensonic.get_sonic_similar_tracks("999999")
    with pytest.raises(libopensonic.errors.SonicError, match="count 2 or more"):
        opensonic.find_sonic_path("1000", "1001", count=1)


def test_similarity_is_the_share_of_track_pairs_with_a_lower_cosine(opensonic, tables_dir):
    """400 tracks have 79,800 pairs, fewer than the sample: the calibration is exact here."""
    from playlists import load_tables

    tables = load_tables(tables_dir)
    cosines = (tables.vectors @ tables.vectors.T)[np.triu_indices(len(tables), k=1)]
    seed = tables.vectors[tables.row(1010)]
    matches = opensonic.get_sonic_similar_tracks("1010", count=200)
    assert len(matches) == 200
    for match in matches:
        cosine = float(tables.vectors[tables.row(int(match.entry.id))] @ seed)
        share = float(np.mean(cosines < cosine))
        assert abs(match.similarity - share) <= 1.5 / len(cosines) + 1e-6, (match.entry.id, cosine)
    assert matches[-1].similarity < matches[0].similarity < 1


# ---------------------------------------------------------------------------------------------------------------
# Every answer against the spec


CALLS = [
    ("getSonicSimilarTracks", {"id": "1010", "count": "3"}),
    ("findSonicPath", {"startSongId": "1000.wav", "endSongId": "1399", "count": "5"}),
    ("findSonicPath", {"startSongId": "1000", "endSongId": "1000"}),
    ("getOpenSubsonicExtensions", {}),
    ("getLicense", {}),
    ("ping", {}),
]


@pytest.mark.parametrize("method, params", CALLS)
def test_json_answers_follow_the_spec_by_get_and_post(http, method, params):
    answers = []
    for path in (f"/rest/{method}", f"/rest/{method}.view"):
        query = {**AUTH, **params, "f": "json"}
        for response in (http.get(path, params=query), http.post(path, data=query),
                         http.post(path, params={"f": "json"}, data={**AUTH, **params})):  # both places at once
            assert response.status_code == 200 and response.headers["content-type"] == "application/json"
            validate(method, response.json())
            assert response.json()["subsonic-response"]["status"] == "ok"
            answers.append(response.json())
    assert all(a == answers[0] for a in answers)


FAILURES = [
    ("getSonicSimilarTracks", {}, 10, "missing parameter 'id'"),
    ("getSonicSimilarTracks", {"id": ""}, 10, "missing parameter 'id'"),
    ("findSonicPath", {"startSongId": "1000"}, 10, "missing parameter 'endSongId'"),
    ("getSonicSimilarTracks", {"id": "999999"}, 70, "track 999999 is not in"),
    ("getSonicSimilarTracks", {"id": "nowhere/x.wav"}, 70, "is neither a track id"),
    ("getSonicSimilarTracks", {"id": "../../etc/passwd"}, 0, "outside the music folder"),
    ("getSonicSimilarTracks", {"id": "1010", "count": "abc"}, 0, "parameter 'count' must be an integer"),
    ("getSonicSimilarTracks", {"id": "1010", "count": "-1"}, 0, "parameter 'count' must be 0 or more"),
    ("findSonicPath", {"startSongId": "1000", "endSongId": "1001", "count": "0"}, 0, "must be 1 or more"),
    ("findSonicPath", {"startSongId": "1000", "endSongId": "1001", "count": "1"}, 0, "count 2 or more"),
]


@pytest.mark.parametrize("method, params, code, message", FAILURES)
def test_failures_are_http_200_in_the_envelope(http, method, params, code, message):
    for response in (http.get(f"/rest/{method}", params={**params, "f": "json"}),
                     http.post(f"/rest/{method}.view", data={**AUTH, **params, "f": "json"})):
        assert response.status_code == 200, response.text
        validate(method, response.json())
        body = response.json()["subsonic-response"]
        assert body["status"] == "failed" and body["error"]["code"] == code
        assert message in body["error"]["message"] and "\n" not in body["error"]["message"]
        assert "Traceback" not in response.text


def test_counts_beyond_the_cap_are_cut_and_zero_is_empty(http):
    def matches(**params):
        answer = http.get("/rest/getSonicSimilarTracks", params={**params, "f": "json"}).json()
        validate("getSonicSimilarTracks", answer)
        return answer["subsonic-response"]["sonicMatch"]

    assert matches(id="1010", count="0") == []
    assert len(matches(id="1010", count="100000")) == 399  # the whole catalogue but the song itself
    path = http.get("/rest/findSonicPath", params={"startSongId": 1000, "endSongId": 1399, "count": 100000,
                                                   "f": "json"}).json()
    validate("findSonicPath", path)
    assert len(path["subsonic-response"]["sonicMatch"]) == 200


def test_unknown_methods_other_http_methods_and_oversized_requests(http):
    answer = http.get("/rest/getArtists.view", params={"f": "json"})
    assert answer.status_code == 200
    validate("ping", answer.json())
    assert "does not answer 'getArtists'" in answer.json()["subsonic-response"]["error"]["message"]
    refused = http.delete("/rest/ping", params={"f": "json"})
    assert refused.status_code == 405 and refused.json()["subsonic-response"]["error"]["code"] == 0
    multipart = http.post("/rest/ping", params={"f": "json"}, files={"x": b"y"})
    assert multipart.json()["subsonic-response"]["error"]["message"].startswith("a POST must send")
    long_query = http.get("/rest/getSonicSimilarTracks", params={"id": "1" * 9000, "f": "json"})
    big_body = http.post("/rest/getSonicSimilarTracks", params={"f": "json"}, data={"id": "1", "x": "y" * 70_000})
    for response, message in ((long_query, "longer than 8192 bytes"), (big_body, "larger than 65536 bytes")):
        assert response.status_code == 200 and message in response.json()["subsonic-response"]["error"]["message"]
        validate("getSonicSimilarTracks", response.json())
    assert http.get("/radio", params={"seed": 1010, "n": 2}).status_code == 200  # the JSON API is as it was


# ---------------------------------------------------------------------------------------------------------------
# XML, Subsonic's default format


def xml(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{NAMESPACE}subsonic-response" and root.get("openSubsonic") == "true"
    assert root.get("version") == "1.16.1" and root.get("type") == "wavelist"
    return root


def test_xml_is_the_default_and_holds_any_title(http):
    for response in (http.get("/rest/findSonicPath", params={"startSongId": 1399, "endSongId": 1005, "count": 4}),
                     http.post("/rest/findSonicPath.view", data={**AUTH, "startSongId": 1399, "endSongId": 1005,
                                                                  "count": 4})):
        root = xml(response)
        assert root.get("status") == "ok"
        matches = root.findall(f"{NAMESPACE}sonicMatch")
        entries = [m.find(f"{NAMESPACE}entry") for m in matches]
        assert [e.get("id") for e in entries][::3] == ["1399", "1005"] and len(entries) == 4
        assert entries[0].get("title") == NASTY_TITLE and entries[0].get("isDir") == "false"
        assert entries[-1].get("title") == "Bell\ufffd and \ufffd[2J escape"
        assert float(matches[0].get("similarity")) == 1.0 and 0 <= float(matches[1].get("similarity")) < 1
    json_title = http.get("/rest/findSonicPath", params={"startSongId": 1005, "endSongId": 1399, "count": 2,
                                                         "f": "json"}).json()
    assert json_title["subsonic-response"]["sonicMatch"][0]["entry"]["title"] == CONTROL_TITLE


def test_xml_extensions_failures_and_ping(http):
    extensions = xml(http.get("/rest/getOpenSubsonicExtensions.view"))
    found = {e.get("name"): [v.text for v in e.findall(f"{NAMESPACE}versions")]
             for e in extensions.findall(f"{NAMESPACE}openSubsonicExtensions")}
    assert found == {"sonicSimilarity": ["1"], "formPost": ["1"]}
    assert xml(http.get("/rest/getLicense")).find(f"{NAMESPACE}license").get("valid") == "true"
    assert xml(http.post("/rest/ping.view", data=AUTH)).get("status") == "ok"
    failed = xml(http.get("/rest/getSonicSimilarTracks", params={"id": "999999", "f": "xml"}))
    assert failed.get("status") == "failed" and failed.find(f"{NAMESPACE}error").get("code") == "70"


# ---------------------------------------------------------------------------------------------------------------
# The calibration, in-process


@pytest.mark.unit
def test_calibration_of_a_sampled_catalogue():
    """3,000 tracks have 4.5 million pairs: 200,000 sampled give the share to within a percent, monotone in the
    cosine, 0 at -1 and 1 only at 1."""
    from wavelist.subsonic_api import Calibration

    vectors = np.random.default_rng(1).standard_normal((3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    calibration = Calibration(vectors)
    assert len(calibration.cosines) == 200_000
    exact = np.sort((vectors @ vectors.T)[np.triu_indices(3000, k=1)])
    probes = np.linspace(-0.9, 0.95, 50)
    shares = np.searchsorted(exact, probes) / len(exact)
    assert np.abs(calibration(probes) - shares).max() < 0.01
    grid = calibration(np.linspace(-1, 1, 10_001))
    assert grid[0] == 0 and grid[-1] == 1 and np.all(np.diff(grid) > 0) and grid[-2] < 1
    assert np.array_equal(Calibration(vectors).cosines, calibration.cosines)  # the same tables, the same numbers
