"""A file's audio identity survives moves, renames and retags, and differs when the audio does (core.identity)."""
from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from core import catalogue as cat
from core.identity import PCM_MD5, audio_identity, copy_ids, fma_layout_id, identity_track_id
from tests.conftest import tone, write_audio

pytestmark = pytest.mark.unit
SR = 22050


def identity(path: Path) -> str:
    with path.open("rb") as handle:
        return audio_identity(handle)


def retag(path: Path, long: bool = False, **values: str) -> None:
    """Rewrite ``path``'s tags with mutagen (``long``: a tag large enough to re-page an Ogg header)."""
    import mutagen

    from mutagen.id3 import ID3, TALB, TIT2

    if long:
        values["album"] = "x" * 70_000
    opened = mutagen.File(path, easy=True)
    if opened.tags is None:
        opened.add_tags()
    if isinstance(opened.tags, ID3):  # WAV and AIFF: an ID3 chunk, without mutagen's easy keys
        opened.tags.add(TIT2(encoding=3, text=values.get("title", "")))
        opened.tags.add(TALB(encoding=3, text=values.get("album", "")))
    else:
        for key, value in values.items():
            opened[key] = value
    opened.save()


def music(seconds: float = 2.0, freq: float = 330.0) -> np.ndarray:
    rng = np.random.default_rng(int(freq))
    return tone(freq, seconds, SR) + 0.05 * rng.standard_normal(int(seconds * SR)).astype(np.float32)


FORMATS = [("mp3", {"format": "MP3"}), ("flac", {}), ("ogg", {"format": "OGG"}),
           ("opus", {"format": "OGG", "subtype": "OPUS"}), ("wav", {}), ("aiff", {})]


@pytest.mark.parametrize("suffix, kwargs", FORMATS, ids=[f for f, _ in FORMATS])
def test_identity_survives_copy_move_and_retag_but_not_new_audio(tmp_path, suffix, kwargs):
    rate = 48000 if suffix == "opus" else SR
    original = write_audio(tmp_path / f"a.{suffix}", music(), rate, **kwargs)
    first = identity(original)
    (tmp_path / "elsewhere").mkdir()
    moved = Path(shutil.copy(original, tmp_path / "elsewhere" / f"renamed.{suffix}"))
    retag(moved, title="New Title", artist="Someone", album="Some Album")
    assert moved.read_bytes() != original.read_bytes()  # the tags did change the file
    assert identity(moved) == first
    retag(moved, long=True, title="Longer " * 100)  # a tag block that grows (re-pages an Ogg's headers)
    assert identity(moved) == first
    other = write_audio(tmp_path / f"b.{suffix}", music(freq=331.0), rate, **kwargs)
    assert identity(other) != first
    assert first.split(":")[0] != "file"  # the container was understood, not hashed whole


def test_mp3_tags_at_both_ends_are_left_out(tmp_path):
    """ID3v2 in front, APEv2, Lyrics3v2 and ID3v1 behind: each peeled off; the frames alone are hashed."""
    path = write_audio(tmp_path / "a.mp3", music(), SR, format="MP3")
    bare = identity(path)
    data = path.read_bytes()
    items = b"\x05\x00\x00\x00\x00\x00\x00\x00Title\x00hello"
    ape_footer = b"APETAGEX" + struct.pack("<IIII", 2000, len(items) + 32, 1, 0) + bytes(8)
    lyrics = b"LYRICSBEGIN" + b"IND00003110"
    lyrics += f"{len(lyrics):06d}".encode() + b"LYRICS200"
    id3v1 = b"TAG" + b"t" * 30 + bytes(95)
    id3v2 = b"ID3\x03\x00\x00" + bytes([0, 0, 0, 20]) + bytes(20)
    path.write_bytes(id3v2 + data + items + ape_footer + lyrics + id3v1)
    assert identity(path) == bare


def test_flac_uses_streaminfo_md5_and_a_wav_of_the_same_samples_agrees(tmp_path):
    import soundfile

    samples = (music() * 20000).astype(np.int16)
    flac = tmp_path / "a.flac"
    soundfile.write(flac, samples, SR, subtype="PCM_16")
    wav = tmp_path / "a.wav"
    soundfile.write(wav, samples, SR, subtype="PCM_16")
    found = identity(flac)
    assert found.startswith(PCM_MD5 + ":") and found == identity(wav)
    # an encoder that wrote no MD5: the audio frames are hashed (and a retag still leaves them alone)
    data = bytearray(flac.read_bytes())
    start = data.index(b"fLaC") + 4 + 4 + 18
    data[start:start + 16] = bytes(16)
    flac.write_bytes(bytes(data))
    frames = identity(flac)
    assert frames.startswith("flac-frames:")
    retag(flac, title="Retagged")
    assert identity(flac) == frames


def test_wav_chunks_besides_fmt_and_data_are_left_out(tmp_path):
    wav = write_audio(tmp_path / "a.wav", music(), SR, subtype="FLOAT")
    before = identity(wav)
    assert before.startswith("wav-data:")
    data = wav.read_bytes()
    info = b"INFOINAM\x06\x00\x00\x00hello\x00"
    chunk = b"LIST" + struct.pack("<I", len(info)) + info
    body = data[12:] + chunk
    wav.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    assert identity(wav) == before


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def test_mp4_hashes_its_media_data_not_its_metadata():
    ftyp = box(b"ftyp", b"M4A \x00\x00\x00\x00")
    mdat = box(b"mdat", b"\x01\x02" * 500)
    moov = box(b"moov", box(b"udta", box(b"meta", b"title one")))
    retagged = box(b"moov", box(b"udta", box(b"meta", b"a much longer title")))
    first = audio_identity(io.BytesIO(ftyp + moov + mdat))
    assert first.startswith("mp4-mdat:")
    assert audio_identity(io.BytesIO(ftyp + mdat + retagged + box(b"free", bytes(64)))) == first
    assert audio_identity(io.BytesIO(ftyp + moov + box(b"mdat", b"\x01\x03" * 500))) != first


def test_anything_else_is_hashed_whole():
    assert audio_identity(io.BytesIO(b"not audio at all")).startswith("file:")
    assert audio_identity(io.BytesIO(b"RIFF\x10\x00\x00\x00WAVEjunk")).startswith("file:")  # a WAV without data
    assert audio_identity(io.BytesIO(b"")).startswith("file:")
    assert audio_identity(io.BytesIO(b"OggS" + bytes(10))).startswith("file:")  # a truncated Ogg page


def test_fma_layout_keeps_numbers_and_other_digit_names_do_not():
    assert fma_layout_id("000/000123.mp3") == 123
    assert fma_layout_id("fma_small/155/155066.mp3") == 155066
    assert fma_layout_id("01.mp3") is None and fma_layout_id("Album/01.mp3") is None
    assert fma_layout_id("123/000123.mp3") is None  # the folder is not the number's first three digits
    assert cat.track_id_for("Album/01.mp3") != cat.track_id_for("Other/01.mp3")


def test_two_albums_with_the_same_file_names_get_distinct_ids(tmp_path):
    """The defect: folder mode kept ``01.mp3``'s number as its id, so a second album's ``01.mp3`` was rejected."""
    for album, freq in (("One", 330.0), ("Two", 440.0)):
        write_audio(tmp_path / album / "01.wav", music(freq=freq), SR)
    paths, _ = cat.walk_audio_folder(str(tmp_path))
    rows, _ = cat.folder_tracks(paths, root=str(tmp_path))
    for row in rows:
        row["audio_identity"] = identity(Path(row["path"]))
    rows, duplicates = cat.drop_duplicate_ids(cat.assign_ids(rows))
    assert len(rows) == 2 and not duplicates
    assert {r["track_id"] for r in rows} == {identity_track_id(r["audio_identity"]) for r in rows}
    assert all(r["split"] in ("train", "validation", "test") for r in rows)


def test_copies_of_one_audio_get_ids_in_path_order_and_an_update_keeps_its_own():
    ids = copy_ids("mp3-frames:ab", ["b/x.mp3", "a/x.mp3", "c/x.mp3"])
    assert [ids[p] for p in ("a/x.mp3", "b/x.mp3", "c/x.mp3")] == [identity_track_id("mp3-frames:ab", n)
                                                                   for n in range(3)]
    # an update: the copy already in the tables holds copy 0's id; a new copy takes the lowest free number
    again = copy_ids("mp3-frames:ab", ["a/new.mp3"], taken={ids["a/x.mp3"]})
    assert again == {"a/new.mp3": identity_track_id("mp3-frames:ab", 1)}
