"""The archive codec's canonical form: zip members and gzip streams with their deflate undone.

Wheels, jars and most zips compress each member on its own, so one changed member changes its
whole compressed run and xdelta3 finds little in common between versions. The *expanded* form of a
file replaces every deflate stream that zlib reproduces bit-exactly by its decompressed bytes plus
the zlib parameters that recompress it; everything else (headers, central directory, data
descriptors, stored members, streams zlib does not reproduce) is kept verbatim. Deltas are then
made between expanded forms, and ``rebuild`` turns an expanded form back into the original bytes.

The expanded form is a record stream, independent of the container, so rebuilding needs no zip or
gzip parsing at all::

    MAGIC
    b"V" u64 n            then n verbatim bytes
    b"D" level memlevel strategy wbits u32 crc32 u64 deflated u64 plain
                          then `plain` bytes that recompress to exactly `deflated` bytes
    b"E" u64 size         size of the original file, end of stream

This module writes and reads the records; ``archive_zip`` finds the members of a zip and
``archive_deflate`` chooses, checks and replays the zlib parameters of one stream. The rules are
those of ``docs/archive-codec.md``. Nothing holds a whole member in memory: members are
decompressed and recompressed in chunks (``max_length`` bounds what a zip bomb can make us hold),
and the record header of a member is patched in place once its sizes are known.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dgagent.engine.archive_deflate import CHUNK, RECORD, Params, read_stream, write_stream
from dgagent.engine.archive_zip import deflated_members
from dgagent.errors import IntegrityError

__all__ = [
    "CODEC",
    "MAGIC",
    "Expansion",
    "expand",
    "expand_for_delta",
    "rebuild",
    "sniff",
]

CODEC = "archive-v1"
"""The value of ``dg-agent-codec`` on deltas between expanded forms."""
MAGIC = b"DG-ARCHIVE-1\n"
"""Starts every expanded form; it is no compressor's magic, so xdelta3 never unpacks it."""

_VERBATIM = struct.Struct("<cQ")
_END = struct.Struct("<cQ")


@dataclass
class Expansion:
    """What ``expand`` did to one file."""

    kind: str | None
    """"zip", "gzip" or None (not an archive we expand)."""
    members: int = 0
    """Deflate streams replaced by their decompressed bytes."""
    verbatim: int = 0
    """Deflate streams kept as they are (zlib does not reproduce them, or they look damaged)."""
    deflated_bytes: int = 0
    plain_bytes: int = 0


def sniff(path: Path) -> str | None:
    """ "zip" or "gzip" by magic number, else None."""
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04") or head == b"PK\x05\x06":
        return "zip"
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    return None


def expand(source: Path, out: BinaryIO, *, verify: bool = True) -> Expansion:
    """Write the expanded form of ``source`` into ``out`` (a seekable file open for writing).

    Never fails on a damaged archive: what cannot be parsed or reproduced stays verbatim. With
    ``verify`` every stream longer than the probe is recompressed in full and compared; without
    it, the probe's match on the first 64 KiB decides (and the member's CRC-32 must still match).
    """
    kind = sniff(source)
    result = Expansion(kind)
    size = source.stat().st_size
    out.write(MAGIC)
    with source.open("rb") as src:
        pos = 0
        if kind == "zip":
            spans: Iterable[tuple[int, int | None, int | None]] = deflated_members(src, size)
        elif kind == "gzip":
            spans = [(start, None, None)] if (start := _gzip_data_start(src, size)) else []
        else:
            spans = []
        params: Params | None = None
        for start, length, crc in spans:
            if start < pos or (length is not None and start + length > size):
                continue  # overlapping or past the end: a lying directory; leave it verbatim
            _copy_verbatim(src, out, pos, start)
            done = write_stream(src, out, start, length=length, crc=crc, last=params, verify=verify)
            if done is None:
                result.verbatim += 1
                pos = start
                continue
            used, params, plain = done
            result.members += 1
            result.deflated_bytes += used
            result.plain_bytes += plain
            pos = start + used
        _copy_verbatim(src, out, pos, size)
    out.write(_END.pack(b"E", size))
    return result


def _copy_verbatim(src: BinaryIO, out: BinaryIO, start: int, end: int) -> None:
    if end <= start:
        return
    out.write(_VERBATIM.pack(b"V", end - start))
    src.seek(start)
    left = end - start
    while left:
        data = src.read(min(CHUNK, left))
        if not data:
            raise IntegrityError(f"{src.name} shrank while it was being read")
        out.write(data)
        left -= len(data)


def _gzip_data_start(src: BinaryIO, size: int) -> int | None:
    """Offset of the deflate data of a gzip file's first member (RFC 1952 header walk)."""
    src.seek(0)
    head = src.read(10)
    if len(head) < 10 or head[3] & 0xE0:
        return None
    flags, pos = head[3], 10
    if flags & 0x04:  # FEXTRA
        src.seek(pos)
        extra = src.read(2)
        if len(extra) < 2:
            return None
        pos += 2 + int.from_bytes(extra, "little")
    for bit in (0x08, 0x10):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            src.seek(pos)
            while True:
                block = src.read(4096)
                if not block:
                    return None
                end = block.find(b"\0")
                if end >= 0:
                    pos += end + 1
                    break
                pos += len(block)
    if flags & 0x02:  # FHCRC
        pos += 2
    return pos if pos < size else None


def expand_for_delta(source: Path, out: BinaryIO) -> Expansion:
    """The archive-v1 expansion, as both writer and reader of a delta make it.

    The reference's expanded form is never rebuilt, only diffed against, so it must simply come
    out the same on both sides: its rules (candidates, probe size, no full verification) are part
    of the archive-v1 format and cannot change without a new codec version. A target member that
    would not recompress exactly is caught by the decode check before upload.
    """
    return expand(source, out, verify=False)


def rebuild(expanded: BinaryIO, out: BinaryIO) -> int:
    """Turn an expanded form back into the original bytes; returns their size.

    Every recompressed stream must have its recorded length and its plain bytes their CRC-32;
    the caller still checks the whole file's SHA-256.
    """
    if expanded.read(len(MAGIC)) != MAGIC:
        raise IntegrityError("not an expanded archive (bad magic): the delta does not fit")
    total = 0
    while True:
        tag = expanded.read(1)
        if tag == b"V":
            (n,) = struct.unpack("<Q", _read_exact(expanded, 8))
            _copy(expanded, out, n)
            total += n
        elif tag == b"D":
            total += read_stream(expanded, out, tag + _read_exact(expanded, RECORD.size - 1))
        elif tag == b"E":
            (size,) = struct.unpack("<Q", _read_exact(expanded, 8))
            if size != total or expanded.read(1):
                raise IntegrityError(f"expanded archive rebuilt {total} bytes, expected {size}")
            return total
        else:
            raise IntegrityError(f"expanded archive has an unknown record {tag!r}")


def _read_exact(src: BinaryIO, n: int) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise IntegrityError("expanded archive is truncated")
    return data


def _copy(src: BinaryIO, out: BinaryIO, n: int) -> None:
    while n:
        data = src.read(min(CHUNK, n))
        if not data:
            raise IntegrityError("expanded archive is truncated")
        out.write(data)
        n -= len(data)
