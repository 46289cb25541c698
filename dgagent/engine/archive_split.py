"""Split points: where one deflate stream can be recompressed in pieces, on every core at once.

Rebuilding an archive delta recompresses each changed member, and one zlib stream is one thread's
work (0.57 s for numpy's 10.4 MB ``_multiarray_umath``). But zlib's deflate (levels 4-9, the lazy
matcher) carries little state across the end of a block: the last 32 KiB of plain data, which
``zdict`` restores, and a pending lazy match, which is settled at most blocks' ends. So a
compressor started at a block's end with the 32 KiB before it as its dictionary emits, bit for
bit, the blocks the whole-stream compressor emitted from there on (measured: 128 of 128 block
ends of that member, 20 of 20 of numpy's ``_simd``).

The encoder has the original deflated bytes, so it finds the block ends (zlib's own inflate,
stopping at each block with ``Z_BLOCK``), picks one about every ``SEGMENT`` plain bytes, and
checks each by recompressing the block after it from there and comparing bits. The chosen
``(plain offset, bit offset)`` pairs travel in the delta (``archive_v2``'s ``S`` part). The reader
compresses the pieces side by side and splices their bits (``splice``); a piece's bits are not
byte-aligned, and its compressor also runs ``LOOKAHEAD`` bytes past its end so that its last
matches see what the whole-stream compressor saw. The member's CRC-32 and deflated size are still
checked, and the whole file's SHA-256: a split that does not hold fails the delta's decode check
when it is made, and the encoder then makes the delta without splits.

Finding block ends needs zlib's C inflate through ctypes (Python's ``zlib`` module does not say
where blocks end). Where the zlib library cannot be loaded, no splits are made and members are
recompressed whole, as before; reading never needs it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import struct
import zlib
from collections.abc import Sequence
from typing import BinaryIO

from dgagent.engine.archive_deflate import Params
from dgagent.errors import IntegrityError

log = logging.getLogger(__name__)

__all__ = [
    "LOOKAHEAD",
    "MIN_PLAIN",
    "SEGMENT",
    "Split",
    "block_ends",
    "check",
    "choose",
    "compress_piece",
    "pack",
    "splice",
    "unpack",
]

Split = tuple[int, int]
"""(plain offset, bit offset in the deflated stream) where a block ends and the next starts."""

SEGMENT = 1024 * 1024
"""Plain bytes per piece, about: small enough to keep every core busy on one member, large
enough that the 32 KiB dictionary and the look-ahead each piece repeats cost little."""
MIN_PLAIN = 2 * SEGMENT
"""Smaller members are recompressed whole."""
LOOKAHEAD = 4096
"""Plain bytes a piece's compressor reads past its end: deflate looks at most 258 + 262 bytes
ahead of the position it encodes."""
WINDOW = 32 * 1024
_TRIES = 4
"""Block ends tried after each target offset before giving that piece up."""
_MAX_SPLITS = 1 << 16

# zlib.h's z_stream; uLong is unsigned long (64-bit on the LP64 systems dg-agent runs on).
_Z_BLOCK, _Z_OK, _Z_STREAM_END = 5, 0, 1


class _ZStream(ctypes.Structure):
    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_uint),
        ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_uint),
        ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p),
        ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong),
        ("reserved", ctypes.c_ulong),
    ]


@functools.cache
def _libz() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("z")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.zlibVersion.restype = ctypes.c_char_p
        lib.inflateInit2_.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.inflate.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.inflateEnd.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError) as exc:
        log.info("zlib's C library could not be loaded (%s): members are not split", exc)
        return None
    return lib


def block_ends(deflated: bytes) -> list[tuple[int, int, bool]] | None:
    """Every block boundary of a raw deflate stream, in order: (plain offset, bit offset, whether
    the block that starts there is stored); None if zlib's C library is not at hand or the
    stream does not inflate."""
    lib = _libz()
    if lib is None:
        return None
    stream = _ZStream()
    source = ctypes.create_string_buffer(deflated, len(deflated))
    sink = ctypes.create_string_buffer(256 * 1024)
    if lib.inflateInit2_(ctypes.byref(stream), -15, lib.zlibVersion(), ctypes.sizeof(stream)):
        return None
    found: list[tuple[int, int, bool]] = []
    try:
        stream.next_in, stream.avail_in = ctypes.addressof(source), len(deflated)
        while True:
            if stream.avail_out == 0:
                stream.next_out, stream.avail_out = ctypes.addressof(sink), len(sink)
            code = lib.inflate(ctypes.byref(stream), _Z_BLOCK)
            if code == _Z_STREAM_END:
                return found
            if code != _Z_OK:
                return None
            # Bit 7: inflate stopped at a block's end; bits 0-2: bits of the last byte read
            # that belong to the next block.
            if stream.data_type & 128 and not stream.data_type & 64:
                bit = stream.total_in * 8 - (stream.data_type & 7)
                if bit < len(deflated) * 8:
                    found.append((stream.total_out, bit, _bits(deflated, bit + 1, 2) == 0))
    finally:
        lib.inflateEnd(ctypes.byref(stream))


def _bits(data: bytes, start: int, n: int) -> int:
    """``n`` bits of ``data`` from bit ``start`` (deflate's order: least significant first)."""
    first = start // 8
    value = int.from_bytes(data[first : (start + n + 7) // 8], "little")
    return (value >> (start % 8)) & ((1 << n) - 1)


def compress_piece(params: Params, plain: bytes, start: int, end: int) -> bytes:
    """Deflate ``plain[start:end]`` (and ``LOOKAHEAD`` bytes past it) as the whole-stream
    compressor did, given the 32 KiB before ``start`` as its dictionary; the caller keeps the
    bits it needs."""
    window = plain[max(0, start - WINDOW) : start]
    compressor = zlib.compressobj(
        params.level,
        zlib.DEFLATED,
        -params.wbits,
        params.memlevel,
        params.strategy,
        *([window] if window else []),
    )
    stop = len(plain) if end == len(plain) else min(len(plain), end + LOOKAHEAD)
    return compressor.compress(plain[start:stop]) + compressor.flush()


def choose(params: Params, deflated: bytes, plain: bytes) -> list[Split]:
    """Split points for recompressing ``plain`` (which ``params`` deflate to ``deflated``) in
    pieces of about ``SEGMENT`` bytes, each checked on the block that follows it; [] when the
    stream is too small, zlib's C library is missing, or no block end restarts exactly."""
    if len(plain) < MIN_PLAIN or params.level < 4:
        return []  # levels 1-3 skip hash insertions a dictionary restores: restarts differ
    ends = block_ends(deflated)
    if not ends or _bits(deflated, 1, 2) == 0 or any(stored for _, _, stored in ends):
        return []  # a stored block's padding depends on where it falls in a byte
    bounds = [(0, 0), *((p, b) for p, b, _ in ends), (len(plain), len(deflated) * 8)]
    chosen: list[Split] = []
    target = SEGMENT
    i = 1
    while i < len(bounds) - 1:
        if bounds[i][0] < target or bounds[i][0] > len(plain) - SEGMENT // 2:
            i += 1
            continue
        for j in range(i, min(i + _TRIES, len(bounds) - 1)):
            (p, b), (p_next, b_next) = bounds[j], bounds[j + 1]
            piece = compress_piece(params, plain, p, p_next)
            if _bits(piece, 0, b_next - b) == _bits(deflated, b, b_next - b):
                chosen.append((p, b))
                target = p + SEGMENT
                i = j
                break
        else:
            target = bounds[min(i + _TRIES, len(bounds) - 1)][0] + SEGMENT
        i += 1
    return chosen


def splice(pieces: Sequence[bytes], splits: Sequence[Split], deflated: int) -> bytes:
    """Join the pieces' bits at the splits' bit offsets into one ``deflated``-byte stream."""
    starts = [0, *(b for _, b in splits)]
    ends = [*starts[1:], deflated * 8]
    out = bytearray(deflated)
    for piece, start, end in zip(pieces, starts, ends, strict=True):
        n = end - start
        # The last piece ends the stream: its final byte's padding may fall short of the
        # original's by up to 7 (zero) bits.
        if len(piece) * 8 < n - (7 if end == deflated * 8 else 0):
            raise IntegrityError("a piece of a split member is shorter than its place")
        shift = start % 8
        value = (int.from_bytes(piece[: (n + 7) // 8], "little") & ((1 << n) - 1)) << shift
        chunk = value.to_bytes((n + shift + 7) // 8, "little")
        at = start // 8
        out[at] |= chunk[0]
        out[at + 1 : at + len(chunk)] = chunk[1:]
    return bytes(out)


_HEAD = struct.Struct("<I")
_MEMBER = struct.Struct("<QI")
_SPLIT = struct.Struct("<QQ")


def pack(table: dict[int, list[Split]]) -> bytes:
    """The ``S`` part: u32 members, then per member u64 origin (where its deflated bytes start
    in the file), u32 n, and n x (u64 plain offset, u64 bit offset)."""
    out = [_HEAD.pack(len(table))]
    for origin, splits in sorted(table.items()):
        out.append(_MEMBER.pack(origin, len(splits)))
        out.extend(_SPLIT.pack(p, b) for p, b in splits)
    return b"".join(out)


def unpack(src: BinaryIO, length: int) -> dict[int, list[Split]]:
    """Read an ``S`` part of ``length`` bytes (checked when a member uses it: ``check``)."""
    data = src.read(length)
    try:
        (count,) = _HEAD.unpack_from(data)
        at = _HEAD.size
        table: dict[int, list[Split]] = {}
        for _ in range(count):
            origin, n = _MEMBER.unpack_from(data, at)
            at += _MEMBER.size
            if n > _MAX_SPLITS:
                raise IntegrityError(f"an archive delta's member claims {n} split points")
            table[origin] = [_SPLIT.unpack_from(data, at + k * _SPLIT.size) for k in range(n)]
            at += n * _SPLIT.size
    except struct.error as exc:
        raise IntegrityError("an archive delta's split points are truncated") from exc
    if at != len(data):
        raise IntegrityError("an archive delta's split points do not fill their part")
    return table


def check(splits: Sequence[Split], plain: int, deflated: int) -> None:
    """Refuse split points that are not strictly inside the member and in order."""
    last_p = last_b = 0
    for p, b in splits:
        if not (last_p < p < plain and last_b < b < deflated * 8):
            raise IntegrityError("an archive delta's split points are out of order")
        last_p, last_b = p, b
