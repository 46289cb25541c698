"""Where the deflated members of a zip file are: its central directory, read without trusting it.

Only the positions matter to the archive codec: everything between members (local headers, data
descriptors, the directory itself) is copied verbatim, so nothing here has to be understood beyond
"member data starts here and is this long". Sizes and offsets come from the central directory
(local headers written with data descriptors carry zeros), zip64 included. Anything implausible
(a directory past the end, a local header that is not one) simply yields fewer members: the codec
then keeps those bytes verbatim, and the whole-file SHA-256 check guards the rest.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = ["Member", "data_offsets", "deflated_members", "members"]

_EOCD = struct.Struct("<4sHHHHIIH")
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_MAX_COMMENT = 0xFFFF
_DEFLATED = 8


@dataclass(frozen=True, order=True)
class Member:
    """One central directory entry, as far as the archive codec needs it."""

    local: int
    """Offset of its local header."""
    csize: int
    crc: int
    method: int
    name: str = field(compare=False)

    @property
    def deflated(self) -> bool:
        return self.method == _DEFLATED


def members(src: BinaryIO, size: int) -> list[Member]:
    """Every entry of the central directory (any method), in directory order."""
    directory = _find_directory(src, size)
    if directory is None:
        return []
    offset, count = directory
    found: list[Member] = []
    src.seek(offset)
    for _ in range(count):
        raw = src.read(_CENTRAL.size)
        if len(raw) < _CENTRAL.size:
            break
        fields = _CENTRAL.unpack(raw)
        if fields[0] != b"PK\x01\x02":
            break
        method, crc, csize, usize = fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len, local = fields[10], fields[11], fields[12], fields[16]
        name = src.read(name_len).decode("utf-8", "replace")
        extra = src.read(extra_len)
        src.seek(comment_len, 1)
        csize, local = _zip64_values(extra, usize, csize, local)
        found.append(Member(local, csize, crc, method, name))
    return found


def data_offsets(src: BinaryIO, size: int, found: list[Member]) -> dict[int, Member]:
    """The members by the offset of their data (local header walked), where it is plausible."""
    offsets: dict[int, Member] = {}
    for member in found:
        start = _data_start(src, member.local, size)
        if start is not None:
            offsets[start] = member
    return offsets


def deflated_members(src: BinaryIO, size: int) -> list[tuple[int, int | None, int | None]]:
    """(data offset, compressed size, CRC-32) of each deflated member, in file order."""
    entries = sorted(m for m in members(src, size) if m.deflated)
    found: list[tuple[int, int | None, int | None]] = []
    for m in entries:
        start = _data_start(src, m.local, size)
        if start is not None:
            found.append((start, m.csize, m.crc))
    return found


def _find_directory(src: BinaryIO, size: int) -> tuple[int, int] | None:
    """(offset, entry count) of the central directory, or None."""
    tail_len = min(size, _EOCD.size + _MAX_COMMENT)
    src.seek(size - tail_len)
    tail = src.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        return None
    fields = _EOCD.unpack_from(tail, at)
    count, offset = fields[4], fields[6]
    if count == 0xFFFF or offset == 0xFFFFFFFF:
        eocd_at = size - tail_len + at
        loc_at = eocd_at - _ZIP64_LOCATOR.size
        if loc_at < 0:
            return None
        src.seek(loc_at)
        locator = _ZIP64_LOCATOR.unpack(src.read(_ZIP64_LOCATOR.size))
        if locator[0] != b"PK\x06\x07" or locator[2] + _ZIP64_EOCD.size > size:
            return None
        src.seek(locator[2])
        record = _ZIP64_EOCD.unpack(src.read(_ZIP64_EOCD.size))
        if record[0] != b"PK\x06\x06":
            return None
        count, offset = record[7], record[9]
    if offset >= size:
        return None
    return offset, count


def _zip64_values(extra: bytes, usize: int, csize: int, local: int) -> tuple[int, int]:
    """Compressed size and local header offset, from the zip64 extra field where masked."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if tag != 1:
            continue
        values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
        if usize == 0xFFFFFFFF and values:
            values.pop(0)
        if csize == 0xFFFFFFFF and values:
            csize = values.pop(0)
        if local == 0xFFFFFFFF and values:
            local = values.pop(0)
    return csize, local


def _data_start(src: BinaryIO, local: int, size: int) -> int | None:
    if local + _LOCAL.size > size:
        return None
    src.seek(local)
    fields = _LOCAL.unpack(src.read(_LOCAL.size))
    if fields[0] != b"PK\x03\x04":
        return None
    return int(local + _LOCAL.size + fields[9] + fields[10])
