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

An archive-v2 delta (``archive_v2``) rebuilds a *plan* instead: the same records after
``PLAN_MAGIC``, plus two that take their bytes from elsewhere::

    b"R" u64 offset u64 n these n bytes of the original reference file (a member unchanged)
    b"H" <as D> u32 part  a D record whose plain bytes the delta's HDiffPatch part `part` makes

This module writes and reads the records; ``archive_zip`` finds the members of a zip and
``archive_deflate`` chooses, checks and replays the zlib parameters of one stream. The rules are
those of ``docs/archive-codec.md``. Nothing holds a whole member in memory: members are
decompressed and recompressed in chunks (``max_length`` bounds what a zip bomb can make us hold),
and the record header of a member is patched in place once its sizes are known.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from dgagent.engine.archive_deflate import (
    CHUNK,
    RECORD,
    Choices,
    Params,
    read_stream,
    stored_only,
    write_inflated,
    write_stream,
)
from dgagent.engine.archive_recompress import Recompressor
from dgagent.engine.archive_split import Split
from dgagent.engine.archive_zip import deflated_members
from dgagent.errors import IntegrityError

__all__ = [
    "CHOICES",
    "CODEC",
    "CODECS",
    "CODEC_V1",
    "CODEC_V2",
    "EXPANSION",
    "INFLATED",
    "INFLATED_MAGIC",
    "MAGIC",
    "PLAN_MAGIC",
    "Expansion",
    "Record",
    "Sources",
    "end_record",
    "expand",
    "expand_for_delta",
    "expand_target",
    "inflate",
    "rebuild",
    "records",
    "sniff",
    "verbatim_header",
]

CODEC_V1 = "archive-v1"
"""``dg-agent-codec`` of a VCDIFF delta between two expanded forms (still read, no longer made)."""
CODEC_V2 = "archive-v2"
"""A container of parts (``archive_v2``) made against the reference's expanded form (still read,
no longer made)."""
CODEC = "archive-v3"
"""``dg-agent-codec`` of the deltas made now: the archive-v2 container, made against the
reference's *inflated form* (``inflate``), which a reader makes without probing zlib."""
CODECS = (CODEC_V1, CODEC_V2, CODEC)
EXPANSION = "archive-v1"
"""The rules of ``expand_for_delta``, which archive-v1 and -v2 deltas use for the reference."""
INFLATED = "archive-v3"
"""The rules of ``inflate``, which archive-v3 deltas use for the reference."""
MAGIC = b"DG-ARCHIVE-1\n"
"""Starts every expanded form; it is no compressor's magic, so xdelta3 never unpacks it."""
INFLATED_MAGIC = b"DG-ARCHIVE-3\n"
"""Starts an inflated form (a diff source only: it cannot be rebuilt)."""
PLAN_MAGIC = b"DG-ARCHIVE-2\n"
"""Starts an archive-v2 plan (records that may point into the reference or a delta part)."""

_VERBATIM = struct.Struct("<cQ")
_END = struct.Struct("<cQ")
_REFERENCE = struct.Struct("<cQQ")
_PART = struct.Struct("<I")


class Sources(Protocol):
    """Where the R and H records of a plan take their bytes from."""

    def copy_reference(self, offset: int, length: int, out: BinaryIO) -> None:
        """Copy ``length`` bytes of the original reference from ``offset`` into ``out``."""

    def member(self, part: int, size: int) -> bytes:
        """The ``size`` plain bytes that HDiffPatch part ``part`` makes."""

    def splits(self, origin: int) -> list[Split]:
        """Split points for the member whose deflated bytes start at ``origin`` ([] if none)."""


@dataclass(frozen=True)
class Record:
    """One record of an expanded form or plan, as ``records`` finds it."""

    tag: bytes
    header: bytes
    at: int
    """Where its data starts in the expanded form."""
    size: int
    """Bytes of data that follow the header (plain bytes for D, n for V)."""
    origin: int
    """Where its bytes go in the original file."""
    stored: int
    """Bytes it makes in the original file (deflated size for D)."""
    crc: int = 0


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

    def pays(self, size: int) -> bool:
        """Whether the streams it expanded make enough of a ``size``-byte file for an archive
        delta to be worth trying (else it would be a compat delta of much the same bytes)."""
        return self.members > 0 and self.deflated_bytes >= MIN_SHARE * size


MIN_SHARE = 0.05
"""Share of a file its reproducible deflate streams must make (a maturin wheel whose LICENSE alone
zlib reproduces is stored as compat, without the cost of a second delta)."""


def sniff(path: Path) -> str | None:
    """ "zip" or "gzip" by magic number, else None."""
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04") or head == b"PK\x05\x06":
        return "zip"
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    return None


CHOICES = Choices()
"""Shared by every ``expand_for_delta`` of this process (see ``Choices``)."""


def expand(
    source: Path,
    out: BinaryIO,
    *,
    verify: bool = True,
    memo: Choices | None = None,
    keep_stored: bool = False,
) -> Expansion:
    """Write the expanded form of ``source`` into ``out`` (a seekable file open for writing).

    Never fails on a damaged archive: what cannot be parsed or reproduced stays verbatim. With
    ``verify`` every stream longer than the probe is recompressed in full and compared; without
    it, the probe's match on the first 64 KiB decides (and the member's CRC-32 must still match).
    With ``keep_stored``, zip members deflated to stored blocks only stay verbatim, unprobed
    (``stored_only``).
    """
    kind = sniff(source)
    result = Expansion(kind)
    size = source.stat().st_size
    out.write(MAGIC)
    with source.open("rb") as src:
        pos = 0
        digests: dict[int, bytes] = {}
        if kind == "zip":
            spans: Iterable[tuple[int, int | None, int | None]] = deflated_members(src, size)
            if keep_stored:
                spans = [
                    (s, n, crc)
                    for s, n, crc in spans
                    if n is None or s + n > size or not stored_only(src, s, n)
                ]
            if memo is not None and not verify:
                inside = [(s, n, crc) for s, n, crc in spans if n is not None and s + n <= size]
                digests = memo.learn(src, inside)
        elif kind == "gzip":
            spans = [(start, None, None)] if (start := _gzip_data_start(src, size)) else []
        else:
            spans = []
        params: Params | None = None
        for start, length, crc in spans:
            if start < pos or (length is not None and start + length > size):
                continue  # overlapping or past the end: a lying directory; leave it verbatim
            _copy_verbatim(src, out, pos, start)
            if memo is not None and length is not None and not verify:
                done = memo.write(
                    src, out, start, length=length, crc=crc, last=params, digest=digests.get(start)
                )
            else:
                done = write_stream(
                    src, out, start, length=length, crc=crc, last=params, verify=verify
                )
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
    out.write(end_record(size))
    return result


def _copy_verbatim(src: BinaryIO, out: BinaryIO, start: int, end: int) -> None:
    if end <= start:
        return
    out.write(verbatim_header(end - start))
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
    """The archive-v1 expansion: of the reference an archive-v1 or -v2 delta was made against
    (archive-v3 deltas use the reference's ``inflate`` form, and ``expand_target`` for targets).

    A reference's expanded form is never rebuilt, only diffed against, so it must simply come
    out the same on both sides: its rules (candidates, probe size, no full verification) are part
    of the archive-v1 and -v2 formats and cannot change. A target member that would not
    recompress exactly is caught by the decode check before upload.
    """
    return expand(source, out, verify=False, memo=CHOICES)


def expand_target(source: Path, out: BinaryIO) -> Expansion:
    """The expansion of a file an archive-v3 delta is made of: ``expand_for_delta``'s, except
    that members deflated to stored blocks only stay verbatim. Such a member costs a probe to
    expand and a recompression at every read, for nothing: its deflated bytes hold its plain
    bytes (botocore changes ~830 of them per release, ``.json.gz`` files stored again in the
    wheel; recompressing them was most of a read). Readers only copy V records, so the plans
    this makes read with every archive-v3 reader."""
    return expand(source, out, verify=False, memo=CHOICES, keep_stored=True)


def inflate(source: Path, out: BinaryIO) -> None:
    """The inflated form of ``source``, archive-v3's diff source for a reference.

    Like an expanded form, but every deflate stream that inflates cleanly (zip members within
    their declared size and to their CRC-32; a gzip file's first member) becomes its plain
    bytes, whether or not zlib would reproduce it, under a D header whose zlib parameters are all
    zero. Nothing is probed or recompressed, so a reader makes it at inflate speed: the
    reference is stored as the original file and never rebuilt from this form. Inflating is
    deterministic, so writer and reader make the same bytes with any zlib.
    """
    size = source.stat().st_size
    kind = sniff(source)
    out.write(INFLATED_MAGIC)
    with source.open("rb") as src:
        spans: Iterable[tuple[int, int | None, int | None]] = []
        if kind == "zip":
            spans = deflated_members(src, size)
        elif kind == "gzip" and (start := _gzip_data_start(src, size)):
            spans = [(start, None, None)]
        pos = 0
        for start, length, crc in spans:
            if start < pos or (length is not None and start + length > size):
                continue  # overlapping or past the end: a lying directory; leave it verbatim
            _copy_verbatim(src, out, pos, start)
            done = write_inflated(src, out, start, length=length, crc=crc)
            pos = start + done[0] if done is not None else start
        _copy_verbatim(src, out, pos, size)
    out.write(end_record(size))


def records(expanded: BinaryIO) -> Iterator[Record]:
    """The V and D records of an expanded or inflated form (from its start), without reading
    their data."""
    if expanded.read(len(MAGIC)) not in (MAGIC, INFLATED_MAGIC):
        raise IntegrityError("not an expanded archive (bad magic)")
    origin = 0
    while True:
        tag = expanded.read(1)
        if tag == b"V":
            header = tag + _read_exact(expanded, 8)
            (n,) = struct.unpack("<Q", header[1:])
            record = Record(tag, header, expanded.tell(), n, origin, n)
        elif tag == b"D":
            header = tag + _read_exact(expanded, RECORD.size - 1)
            *_, crc, deflated, plain = RECORD.unpack(header)
            record = Record(tag, header, expanded.tell(), plain, origin, deflated, crc)
        elif tag == b"E":
            return
        else:
            raise IntegrityError(f"expanded archive has an unknown record {tag!r}")
        yield record
        expanded.seek(record.at + record.size)
        origin += record.stored


def verbatim_header(n: int) -> bytes:
    """The header of a V record of ``n`` bytes (they follow it)."""
    return _VERBATIM.pack(b"V", n)


def end_record(size: int) -> bytes:
    """The E record that closes an expanded form or plan of a ``size``-byte file."""
    return _END.pack(b"E", size)


def reference_record(offset: int, length: int) -> bytes:
    return _REFERENCE.pack(b"R", offset, length)


def part_record(header: bytes, part: int) -> bytes:
    """An H record: a D record's header whose plain bytes HDiffPatch part ``part`` makes."""
    return b"H" + header[1:] + _PART.pack(part)


def rebuild(expanded: BinaryIO, out: BinaryIO, sources: Sources | None = None) -> int:
    """Turn an expanded form (or, with ``sources``, a plan) back into the original bytes;
    returns their size.

    Every recompressed stream must have its recorded length and its plain bytes their CRC-32;
    the caller still checks the whole file's SHA-256.
    """
    magic = expanded.read(len(MAGIC))
    if magic != MAGIC and (magic != PLAN_MAGIC or sources is None):
        raise IntegrityError("not an expanded archive (bad magic): the delta does not fit")
    with Recompressor(out) as background:
        total = _walk(expanded, out, sources, background)
        background.finish()
    return total


def _walk(
    expanded: BinaryIO, out: BinaryIO, sources: Sources | None, background: Recompressor
) -> int:
    total = 0
    while True:
        tag = expanded.read(1)
        if tag == b"V":
            (n,) = struct.unpack("<Q", _read_exact(expanded, 8))
            _copy(expanded, out, n)
            total += n
        elif tag == b"D":
            header = tag + _read_exact(expanded, RECORD.size - 1)
            plain_size = RECORD.unpack(header)[7]
            if background.wants(plain_size):
                splits = sources.splits(total) if sources is not None else []
                total += background.add(header, _read_exact(expanded, plain_size), splits)
            else:
                total += read_stream(expanded, out, header)
        elif tag == b"R" and sources is not None:
            _, offset, n = _REFERENCE.unpack(tag + _read_exact(expanded, _REFERENCE.size - 1))
            sources.copy_reference(offset, n, out)
            total += n
        elif tag == b"H" and sources is not None:
            header = b"D" + _read_exact(expanded, RECORD.size - 1)
            (part,) = _PART.unpack(_read_exact(expanded, _PART.size))
            plain = sources.member(part, RECORD.unpack(header)[7])
            if background.wants(len(plain)):
                total += background.add(header, plain, sources.splits(total))
            else:
                total += read_stream(io.BytesIO(plain), out, header)
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
