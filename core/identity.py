"""A file's audio identity: a hash of its encoded audio without its tag blocks, so that a file keeps it when it
is moved, renamed or retagged, and two files that hold the same audio share it. Recognising a file needs no
decoding: only its container is parsed. Pure code: no Beam, no TensorFlow.

What is hashed, by container (found from the file's first bytes, not its name):

- **MP3**: the bytes between the ID3v2 tags at the start and the APEv2, Lyrics3v2, appended ID3v2 and ID3v1
  tags at the end (the frames, the encoder's Xing/LAME frame included).
- **FLAC** (an ID3v2 tag in front skipped): the MD5 of the decoded samples that STREAMINFO holds, when the
  encoder wrote one (not all zero); else the audio frames after the last metadata block.
- **Ogg** (Vorbis, Opus, FLAC, Speex): every packet but the comment header, as packets (a retag may re-page the
  headers and renumber every page after them, which changes the pages' own bytes and checksums, not the packets).
- **WAV**: the ``fmt`` and ``data`` chunks (``LIST``/``id3`` chunks skipped); integer PCM of 16, 24 or 32 bits
  gets the MD5 of its samples, which is what FLAC's STREAMINFO holds for the same samples, so a WAV and a FLAC
  encoding of it share the identity.
- **AIFF**: the ``COMM`` and ``SSND`` chunks. **MP4/M4A**: the ``mdat`` boxes (the tags live in ``moov``).
- Anything else, or a container that does not parse: the whole file's bytes.

The identity is ``KIND:HEX`` (e.g. ``mp3-frames:9f2c...``); :func:`identity_track_id` makes a track id of it.
"""
from __future__ import annotations

import hashlib
import re
import struct
from typing import BinaryIO, Iterable

CHUNK = 1 << 20  # bytes read at a time
PCM_MD5 = "pcm-md5"  # FLAC STREAMINFO's MD5, or a WAV's integer samples hashed the same way
WHOLE_FILE = "file"
_ZERO_MD5 = bytes(16)
_OGG_COMMENTS = (b"\x03vorbis", b"OpusTags", b"\x81theora")
_FMA_LAYOUT = re.compile(r"(?:^|/)(\d{3})/(\d{6})\.[^/.]+$")


class _Unparsed(Exception):
    """The container did not parse as its first bytes said: the whole file is hashed instead."""


def _new_hash():
    return hashlib.blake2b(digest_size=16)


def _size(stream: BinaryIO) -> int:
    stream.seek(0, 2)
    return stream.tell()


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise _Unparsed("truncated")
    return data


def _hash_range(stream: BinaryIO, start: int, stop: int, digest) -> None:
    """Feed ``digest`` the bytes ``[start, stop)`` of ``stream``."""
    stream.seek(start)
    left = stop - start
    while left > 0:
        data = stream.read(min(CHUNK, left))
        if not data:
            raise _Unparsed("truncated")
        digest.update(data)
        left -= len(data)


def _syncsafe(data: bytes) -> int:
    return (data[0] & 0x7F) << 21 | (data[1] & 0x7F) << 14 | (data[2] & 0x7F) << 7 | (data[3] & 0x7F)


def _after_id3v2(stream: BinaryIO, size: int) -> int:
    """The offset after the ID3v2 tags at the start of the file (0 if none)."""
    offset = 0
    while offset + 10 <= size:
        stream.seek(offset)
        header = stream.read(10)
        if header[:3] != b"ID3" or header[3] == 0xFF:
            break
        offset += 10 + _syncsafe(header[6:10]) + (10 if header[5] & 0x10 else 0)
    return min(offset, size)


def _before_end_tags(stream: BinaryIO, start: int, stop: int) -> int:
    """The offset where the tags at the end of an MP3 begin: ID3v1, APEv2, Lyrics3v2 and an appended ID3v2,
    in any order, each peeled off from the end."""
    while stop - start >= 10:
        if stop - start >= 128:
            stream.seek(stop - 128)
            if stream.read(3) == b"TAG":
                stop -= 128
                continue
        if stop - start >= 32:
            stream.seek(stop - 32)
            footer = stream.read(32)
            if footer[:8] == b"APETAGEX":
                tag_size, flags = struct.unpack("<I", footer[12:16])[0], struct.unpack("<I", footer[20:24])[0]
                stop = max(start, stop - tag_size - (32 if flags & 0x80000000 else 0))
                continue
        if stop - start >= 15:
            stream.seek(stop - 15)
            tail = stream.read(15)
            if tail[6:] == b"LYRICS200" and tail[:6].isdigit():
                stop = max(start, stop - 15 - int(tail[:6]))
                continue
        stream.seek(stop - 10)
        footer = stream.read(10)
        if footer[:3] == b"3DI":
            stop = max(start, stop - 20 - _syncsafe(footer[6:10]))
            continue
        break
    return stop


def _mp3(stream: BinaryIO, start: int, size: int) -> str:
    digest = _new_hash()
    _hash_range(stream, start, _before_end_tags(stream, start, size), digest)
    return f"mp3-frames:{digest.hexdigest()}"


def _flac(stream: BinaryIO, start: int, size: int) -> str:
    stream.seek(start + 4)
    offset = start + 4
    md5 = None
    while True:
        header = _read_exactly(stream, 4)
        last, kind, length = header[0] & 0x80, header[0] & 0x7F, int.from_bytes(header[1:4], "big")
        if kind == 0 and length >= 34:
            md5 = _read_exactly(stream, 34)[18:34]
        offset += 4 + length
        stream.seek(offset)
        if last:
            break
        if offset >= size:
            raise _Unparsed("no last metadata block")
    if md5 is not None and md5 != _ZERO_MD5:
        return f"{PCM_MD5}:{md5.hex()}"
    digest = _new_hash()
    stop = size
    if size - offset >= 128:
        stream.seek(size - 128)
        if stream.read(3) == b"TAG":
            stop -= 128
    _hash_range(stream, offset, stop, digest)
    return f"flac-frames:{digest.hexdigest()}"


def _ogg_packets(stream: BinaryIO, size: int) -> Iterable[tuple[int, int, bytes]]:
    """``(serial, packet number in its stream, packet bytes)`` of every complete packet, in page order."""
    offset = 0
    pending: dict[int, bytearray] = {}
    counts: dict[int, int] = {}
    while offset < size:
        stream.seek(offset)
        header = stream.read(27)
        if len(header) < 27 or header[:4] != b"OggS":
            raise _Unparsed("not an Ogg page")
        serial = struct.unpack("<I", header[14:18])[0]
        lacing = _read_exactly(stream, header[26])
        body = _read_exactly(stream, sum(lacing))
        offset += 27 + len(lacing) + len(body)
        if not header[5] & 0x01:  # a page that does not continue a packet: a stale partial one is dropped
            pending.pop(serial, None)
        packet = pending.setdefault(serial, bytearray())
        position = 0
        for value in lacing:
            packet += body[position:position + value]
            position += value
            if value < 255:
                yield serial, counts.get(serial, 0), bytes(packet)
                counts[serial] = counts.get(serial, 0) + 1
                packet = pending[serial] = bytearray()


def _ogg(stream: BinaryIO, size: int) -> str:
    digest = _new_hash()
    first: dict[int, bytes] = {}
    for serial, number, packet in _ogg_packets(stream, size):
        if number == 0:
            first[serial] = packet[:8]
        head = first.get(serial, b"")
        comment = (packet.startswith(_OGG_COMMENTS)
                   or (head.startswith(b"\x7fFLAC") and 0 < number and packet[:1] and packet[0] & 0x7F in (1, 4)
                       and not packet.startswith(b"\xff"))  # Ogg FLAC: its comment and padding blocks
                   or (head.startswith(b"Speex") and number == 1))
        if not comment:
            digest.update(len(packet).to_bytes(4, "little"))
            digest.update(packet)
    return f"ogg-packets:{digest.hexdigest()}"


def _chunks(stream: BinaryIO, start: int, stop: int, little_endian: bool) -> Iterable[tuple[bytes, int, int]]:
    """``(id, data offset, data length)`` of the RIFF/IFF chunks in ``[start, stop)``."""
    order = "<I" if little_endian else ">I"
    offset = start
    while offset + 8 <= stop:
        stream.seek(offset)
        header = stream.read(8)
        if len(header) < 8:
            break
        length = struct.unpack(order, header[4:8])[0]
        yield header[:4], offset + 8, min(length, stop - offset - 8)
        offset += 8 + length + (length & 1)


def _wav(stream: BinaryIO, size: int) -> str:
    found = {cid: (at, n) for cid, at, n in _chunks(stream, 12, size, True) if cid in (b"fmt ", b"data")}
    if set(found) != {b"fmt ", b"data"}:
        raise _Unparsed("a WAV without fmt or data")
    stream.seek(found[b"fmt "][0])
    fmt = stream.read(found[b"fmt "][1])
    tag, bits = struct.unpack("<H", fmt[:2])[0], struct.unpack("<H", fmt[14:16])[0] if len(fmt) >= 16 else 0
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's first two bytes
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag == 1 and bits in (16, 24, 32):  # integer PCM: FLAC's STREAMINFO MD5 of the same samples
        digest = hashlib.md5()
        _hash_range(stream, found[b"data"][0], sum(found[b"data"]), digest)
        return f"{PCM_MD5}:{digest.hexdigest()}"
    digest = _new_hash()
    digest.update(fmt)
    _hash_range(stream, found[b"data"][0], sum(found[b"data"]), digest)
    return f"wav-data:{digest.hexdigest()}"


def _aiff(stream: BinaryIO, size: int) -> str:
    digest = _new_hash()
    parts = [(cid, at, n) for cid, at, n in _chunks(stream, 12, size, False) if cid in (b"COMM", b"SSND")]
    if {cid for cid, _, _ in parts} != {b"COMM", b"SSND"}:
        raise _Unparsed("an AIFF without COMM or SSND")
    for cid, at, n in parts:
        digest.update(cid)
        _hash_range(stream, at, at + n, digest)
    return f"aiff-data:{digest.hexdigest()}"


def _mp4(stream: BinaryIO, size: int) -> str:
    digest = _new_hash()
    offset, found = 0, False
    while offset + 8 <= size:
        stream.seek(offset)
        header = stream.read(8)
        length, kind = struct.unpack(">I", header[:4])[0], header[4:8]
        body = offset + 8
        if length == 1:
            length, body = struct.unpack(">Q", _read_exactly(stream, 8))[0], offset + 16
        elif length == 0:
            length = size - offset
        if length < body - offset:
            raise _Unparsed("a box shorter than its header")
        if kind == b"mdat":
            _hash_range(stream, body, min(size, offset + length), digest)
            found = True
        offset += length
    if not found:
        raise _Unparsed("no mdat box")
    return f"mp4-mdat:{digest.hexdigest()}"


def _is_mpeg_frame(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0


def audio_identity(stream: BinaryIO) -> str:
    """The identity of the audio file open as the seekable binary ``stream`` (see the module's docstring):
    the same after a move, a rename or a retag; ``KIND:HEX``. Never decodes; reads the audio once."""
    size = _size(stream)
    try:
        start = _after_id3v2(stream, size)
        stream.seek(start)
        head = stream.read(12)
        if head[:4] == b"fLaC":
            return _flac(stream, start, size)
        if start == 0 and head[:4] == b"OggS":
            return _ogg(stream, size)
        if start == 0 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _wav(stream, size)
        if start == 0 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _aiff(stream, size)
        if start == 0 and head[4:8] == b"ftyp":
            return _mp4(stream, size)
        if start > 0 or _is_mpeg_frame(head):
            return _mp3(stream, start, size)
    except (_Unparsed, struct.error, ValueError, IndexError):
        pass
    digest = _new_hash()
    _hash_range(stream, 0, size, digest)
    return f"{WHOLE_FILE}:{digest.hexdigest()}"


def identity_track_id(identity: str, copy: int = 0) -> int:
    """The track id of a file whose audio has ``identity``: a positive 63-bit hash of it; the ``copy``-th other
    file of the same audio (1, 2, ...) hashes ``identity#copy`` instead, so every copy has its own id."""
    key = f"audio:{identity}" if copy == 0 else f"audio:{identity}#{copy}"
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") >> 1


def fma_layout_id(relative_path: str) -> int | None:
    """The number of a file in FMA's own layout ``NNN/NNNNNN.ext`` (the folder the number's first three digits),
    which keeps that number as its track id; None for any other path."""
    found = _FMA_LAYOUT.search(relative_path)
    if found is None or found.group(2)[:3] != found.group(1):
        return None
    return int(found.group(2))


def copy_ids(identity: str, paths: list[str], taken: set[int] | frozenset[int] = frozenset()) -> dict[str, int]:
    """The track ids of the files ``paths`` that hold the audio ``identity``: in path order, the lowest copy
    numbers (:func:`identity_track_id`) whose id ``taken`` does not hold. A fresh ingest takes nothing, so the
    copies are numbered in path order from 0; ``wavelist update`` passes the ids its kept tracks hold, so a
    copy already in the tables keeps its id and a new one takes the lowest free number."""
    used = set(taken)
    ids: dict[str, int] = {}
    copy = 0
    for path in sorted(paths):
        while identity_track_id(identity, copy) in used:
            copy += 1
        ids[path] = identity_track_id(identity, copy)
        used.add(ids[path])
    return ids
