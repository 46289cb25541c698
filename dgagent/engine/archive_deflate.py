"""One deflate stream in the archive codec: find the zlib settings that remake it, and remake it.

A stream is written as a ``D`` record (its decompressed bytes plus the settings) only when zlib
reproduces its stored bytes; ``read_stream`` turns such a record back into those bytes and checks
the CRC-32 and length on the way. Everything streams in ``CHUNK`` pieces.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, cast

from dgagent.errors import IntegrityError

__all__ = [
    "CANDIDATES",
    "CHUNK",
    "PROBE",
    "PROBE_PLAIN",
    "RECORD",
    "THREADS",
    "Choices",
    "Params",
    "read_stream",
    "stored_only",
    "write_inflated",
    "write_stream",
]

CHUNK = 1024 * 1024
PROBE = 256 * 1024
"""Deflated bytes read to choose the parameters (a member this small is settled at once)."""
PROBE_PLAIN = 1024 * 1024
"""At most this much plain data is recompressed per candidate while probing."""
EARLY = 64 * 1024
"""Plain bytes recompressed per candidate before the rest of the probe (see ``_probe``)."""
THREADS = max(2, min(8, os.cpu_count() or 2))
"""Worker threads for zlib and HDiffPatch work (both release the GIL): one per core, 2 to 8."""
RECORD = struct.Struct("<cBBBBIQQ")
"""b"D", level, memLevel, strategy, window bits, CRC-32, deflated size, plain size."""


@dataclass(frozen=True)
class Params:
    """zlib settings that reproduce one deflate stream."""

    level: int
    memlevel: int = 8
    strategy: int = zlib.Z_DEFAULT_STRATEGY
    wbits: int = 15

    def compressor(self) -> zlib._Compress:
        return zlib.compressobj(
            self.level, zlib.DEFLATED, -self.wbits, self.memlevel, self.strategy
        )

    def header(self, crc: int, deflated: int, plain: int) -> bytes:
        fields = (self.level, self.memlevel, self.strategy, self.wbits)
        return RECORD.pack(b"D", *fields, crc, deflated, plain)


# Python's zipfile, wheel builders, jar tools and gzip.py use level 6 or 9 with zlib's defaults;
# the rest are cheap to rule out on a prefix.
CANDIDATES = tuple(
    Params(level, memlevel) for memlevel in (8, 9) for level in (6, 9, 1, 2, 3, 4, 5, 7, 8)
)


class Choices:
    """What ``write_stream`` chose for deflate streams, by their bytes, CRC-32 and the previous
    stream's parameters (all that its choice depends on), so a rerun needs no probing.

    Successive versions of a wheel share most members, and the reference was expanded just
    before: this is the cache of expanded references at the level of one member. Bounded: it is
    emptied when full."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.seen: dict[tuple[bytes, int | None, Params | None], Params | None] = {}

    def write(
        self,
        src: BinaryIO,
        out: BinaryIO,
        start: int,
        *,
        length: int,
        crc: int | None,
        last: Params | None,
        digest: bytes | None = None,
    ) -> tuple[int, Params, int] | None:
        """``write_stream`` without ``verify``, replaying the choice made before on these bytes
        (``digest``: their ``_digest``, when ``learn`` made it already)."""
        key = (digest or _digest(src, start, length), crc, last)
        if key in self.seen:
            known = self.seen[key]
            if known is None:
                return None
            return _replay(src, out, start, length, crc=crc, params=known)
        done = write_stream(src, out, start, length=length, crc=crc, last=last, verify=False)
        if len(self.seen) >= self.limit:
            self.seen.clear()
        self.seen[key] = None if done is None else done[1]
        return done

    def learn(
        self, src: BinaryIO, spans: Sequence[tuple[int, int, int | None]]
    ) -> dict[int, bytes]:
        """Probe the zip members at ``spans`` (start, deflated size, CRC-32) on every core,
        so that the expansion that follows finds its choices made.

        A choice depends on the previous member's parameters, which are only known in order; the
        members are probed assuming the first member's, which a wheel or jar's members share
        (one deflater, one level). A member whose previous member chose otherwise misses the
        memo and is probed in order as before: what is remembered is keyed by that assumption,
        so a wrong guess costs time, never a different expanded form. Members whose probe cannot
        settle the choice (zlib emitted nothing yet) are left to the ordered pass too. Returns
        each member's ``_digest`` by its start, for ``write``."""
        digests: dict[int, bytes] = {}
        if len(spans) < 2:
            return digests
        start, length, crc = spans[0]
        sink = cast(BinaryIO, _Discard())
        first = self.write(src, sink, start, length=length, crc=crc, last=None)
        guess = first[1] if first else None
        if guess is None:
            return digests

        def probe(head: bytes, length: int, crc: int | None) -> tuple[bool, Params | None]:
            candidates, plain, used = _probe_head(head, length, guess, first=True)
            if plain is not None:
                return True, candidates[0] if crc in (None, zlib.crc32(plain)) else None
            if used == 1 or not candidates:
                return True, candidates[0] if candidates else None
            return False, None

        with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="probe") as pool:
            waiting: deque[tuple[bytes, int | None, Future[tuple[bool, Params | None]]]] = deque()
            for start, length, crc in spans[1:]:
                if length <= PROBE:  # most members: one read gives the digest and the probe
                    src.seek(start)
                    head = src.read(length)
                    key = hashlib.blake2b(head, digest_size=16).digest()
                else:
                    key = _digest(src, start, length)
                    src.seek(start)
                    head = src.read(PROBE)
                digests[start] = key
                if (key, crc, guess) in self.seen:
                    continue
                waiting.append((key, crc, pool.submit(probe, head, length, crc)))
                while len(waiting) > 4 * THREADS or (waiting and waiting[0][2].done()):
                    self._keep(guess, *waiting.popleft())
            while waiting:
                self._keep(guess, *waiting.popleft())
        return digests

    def _keep(
        self,
        guess: Params,
        key: bytes,
        crc: int | None,
        probed: Future[tuple[bool, Params | None]],
    ) -> None:
        settled, params = probed.result()
        if settled:
            if len(self.seen) >= self.limit:
                self.seen.clear()
            self.seen[(key, crc, guess)] = params


class _Discard:
    """A seekable sink that keeps nothing: ``learn`` needs a choice, not an expanded form."""

    def __init__(self) -> None:
        self._at = 0

    def write(self, data: bytes) -> int:
        self._at += len(data)
        return len(data)

    def tell(self) -> int:
        return self._at

    def seek(self, at: int) -> int:
        self._at = at
        return at

    def truncate(self) -> int:
        return self._at


def _digest(src: BinaryIO, start: int, length: int) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    src.seek(start)
    left = length
    while left > 0:
        data = src.read(min(CHUNK, left))
        if not data:
            break
        h.update(data)
        left -= len(data)
    return h.digest()


def _replay(
    src: BinaryIO,
    out: BinaryIO,
    start: int,
    length: int | None,
    *,
    crc: int | None,
    params: Params,
) -> tuple[int, Params, int] | None:
    """Write the stream as a D record with ``params``, known to reproduce these very bytes (or
    all zero, for an inflated form)."""
    mark = out.tell()
    done = _stream(src, out, start, length=length, check=[])
    if done is None or (crc is not None and crc != done[2]):
        out.seek(mark)
        out.truncate()
        return None
    used, plain_size, running, _ = done
    end = out.tell()
    out.seek(mark)
    out.write(params.header(running, used, plain_size))
    out.seek(end)
    return used, params, plain_size


def write_stream(
    src: BinaryIO,
    out: BinaryIO,
    start: int,
    *,
    length: int | None,
    crc: int | None,
    last: Params | None,
    verify: bool,
) -> tuple[int, Params, int] | None:
    """Write the deflate stream at ``start`` as a D record if some candidate reproduces it.

    ``length`` is the stored size when known (zip), else the stream's end decides (gzip); ``crc``
    the CRC-32 its plain bytes must have, when known. Returns (deflated bytes, params, plain
    bytes), or None with ``out`` left unchanged.
    """
    candidates, plain, used = _probe(src, start, length, last, first=not verify)
    if plain is not None:
        running = zlib.crc32(plain)
        if crc is not None and crc != running:
            return None
        out.write(candidates[0].header(running, used, len(plain)))
        out.write(plain)
        return used, candidates[0], len(plain)
    # Without ``verify`` a prefix match on real output is trusted (the decode check before upload
    # catches the rare stream that diverges later). Otherwise the whole stream is recompressed
    # with the candidates at once, dropping those that diverge (the common levels first, the
    # rest only if those fail); the choice is deterministic either way.
    trusted = used == 1
    for batch in [candidates] if trusted else [candidates[:3], candidates[3:]]:
        if not batch:
            continue
        mark = out.tell()
        done = _stream(src, out, start, length=length, check=[] if trusted else batch)
        if done is not None and (crc is None or crc == done[2]):
            used, plain_size, running, survivor = done
            params = survivor or batch[0]
            end = out.tell()
            out.seek(mark)
            out.write(params.header(running, used, plain_size))
            out.seek(end)
            return used, params, plain_size
        out.seek(mark)
        out.truncate()
    return None


def _probe(
    src: BinaryIO, start: int, length: int | None, last: Params | None, *, first: bool
) -> tuple[list[Params], bytes | None, int]:
    """The candidates (``last`` first) whose output on the stream's first bytes matches.

    When the whole stream fits in the probe, the match is exact and final: the plain bytes and
    the stream length come back too, so most members need no second pass. Otherwise the third
    value is 1 when the first candidate's match is trusted (``first``: stop at the first one
    whose non-empty output matched), else 0. An empty output (zlib had emitted no block yet)
    matches trivially and proves nothing, so such candidates are kept for a full comparison.
    """
    src.seek(start)
    head = src.read(PROBE if length is None else min(PROBE, length))
    return _probe_head(head, length, last, first)


def _probe_head(
    head: bytes, length: int | None, last: Params | None, first: bool
) -> tuple[list[Params], bytes | None, int]:
    """``_probe`` on the stream's first bytes, already read."""
    d = zlib.decompressobj(-15)
    try:
        plain = d.decompress(head, PROBE_PLAIN)
    except zlib.error:
        return [], None, 0
    whole = d.eof and not d.unconsumed_tail
    used = len(head) - len(d.unused_data)
    if whole and length is not None and used != length:
        return [], None, 0  # the stream ends before its declared size
    found: list[Params] = []
    for params in ([last] if last else []) + [p for p in CANDIDATES if p != last]:
        c = params.compressor()
        # Any prefix of the input gives a prefix of the output, so a candidate is out as soon
        # as its output differs: fed EARLY bytes at a time, most are ruled out on the first
        # block zlib emits instead of on the whole probe.
        got = b""
        for at in range(0, len(plain), EARLY):
            got += c.compress(plain[at : at + EARLY])
            if not head.startswith(got):
                break
        if whole:
            if got + c.flush() == head[:used]:
                return [params], plain, used
        elif head.startswith(got):
            if got and first and not found:
                return [params], None, 1
            found.append(params)
    return found, None, 0


class _Matcher:
    """Recompresses plain bytes as they come and compares with the stored deflate bytes."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self._c = params.compressor()
        self._pending = bytearray()  # stored bytes read but not yet matched

    def stored(self, data: bytes) -> None:
        self._pending += data

    def plain(self, data: bytes) -> bool:
        again = self._c.compress(data)
        if self._pending[: len(again)] != again:
            return False
        del self._pending[: len(again)]
        return True

    def finish(self, unused: int) -> bool:
        if unused:
            del self._pending[len(self._pending) - unused :]
        return bytes(self._pending) == self._c.flush()


def _stream(
    src: BinaryIO, out: BinaryIO, start: int, *, length: int | None, check: list[Params]
) -> tuple[int, int, int, Params | None] | None:
    """Decompress one stream into ``out`` after a placeholder header, recompressing it with each
    of ``check`` as it goes; (used, plain size, CRC-32, first candidate that matched)."""
    out.write(RECORD.pack(b"D", 0, 0, 0, 0, 0, 0, 0))
    d = zlib.decompressobj(-15)
    matchers = [_Matcher(p) for p in check]
    read = plain_size = running = 0
    src.seek(start)
    try:
        while not d.eof:
            want = CHUNK if length is None else min(CHUNK, length - read)
            data = src.read(want) if want else b""
            if not data:
                return None  # truncated, or the declared size ends inside the stream
            read += len(data)
            for m in matchers:
                m.stored(data)
            buf = data
            while True:
                plain = d.decompress(buf, CHUNK)
                buf = d.unconsumed_tail
                out.write(plain)
                running = zlib.crc32(plain, running)
                plain_size += len(plain)
                matchers = [m for m in matchers if m.plain(plain)]
                if check and not matchers:
                    return None
                if d.eof or (not buf and len(plain) < CHUNK):
                    break
    except zlib.error:
        return None
    used = read - len(d.unused_data)
    if length is not None and used != length:
        return None  # the stream ends before its declared size: keep it verbatim
    matchers = [m for m in matchers if m.finish(len(d.unused_data))]
    if check and not matchers:
        return None
    return used, plain_size, running, matchers[0].params if matchers else None


_INFLATED = Params(0, 0, 0, 0)
"""The all-zero parameters of an inflated form's records: never recompressed (or valid)."""


def write_inflated(
    src: BinaryIO, out: BinaryIO, start: int, *, length: int | None, crc: int | None
) -> tuple[int, int] | None:
    """Write the deflate stream at ``start`` as a record of its plain bytes whose zlib
    parameters are all zero (it is never recompressed); (deflated bytes, plain bytes), or None
    with ``out`` left unchanged when it does not inflate cleanly to ``crc``."""
    done = _replay(src, out, start, length, crc=crc, params=_INFLATED)
    return None if done is None else (done[0], done[2])


_STORED = struct.Struct("<BHH")
"""A stored block's header byte (BFINAL, BTYPE 00, padding), LEN and NLEN."""


def stored_only(src: BinaryIO, start: int, length: int) -> bool:
    """Whether the ``length`` deflated bytes at ``start`` are stored blocks only, ending exactly
    there (a deflater's output for data it cannot compress, such as a ``.gz`` inside a wheel).

    Such a stream holds its plain bytes as they are, 5 bytes of block header per block of up to
    64 KiB: kept verbatim, xdelta3 finds those bytes in an inflated reference just as well,
    and a reader copies them instead of recompressing them. Only block headers are read.
    """
    at, end = start, start + length
    while at + _STORED.size <= end:
        src.seek(at)
        head, size, inverse = _STORED.unpack(src.read(_STORED.size))
        if head & 0b110 or size ^ inverse != 0xFFFF:
            return False  # a Huffman block, or not a stored block's header
        at += _STORED.size + size
        if head & 1:
            return bool(at == end)
    return False


def read_stream(src: BinaryIO, out: BinaryIO, header: bytes) -> int:
    """Recompress the D record whose header was just read; returns the deflated bytes written."""
    _, level, memlevel, strategy, wbits, crc, deflated, plain = RECORD.unpack(header)
    params = Params(level, memlevel, strategy, wbits)
    try:
        c = params.compressor()
    except (ValueError, zlib.error) as exc:
        raise IntegrityError(f"expanded archive has invalid zlib parameters {params}") from exc
    running = written = 0
    left = plain
    while left:
        data = src.read(min(CHUNK, left))
        if not data:
            raise IntegrityError("expanded archive ends inside a member")
        left -= len(data)
        running = zlib.crc32(data, running)
        chunk = c.compress(data)
        written += len(chunk)
        out.write(chunk)
    tail = c.flush()
    written += len(tail)
    out.write(tail)
    if running != crc:
        raise IntegrityError(f"a member's CRC-32 is {running:08x}, recorded {crc:08x}")
    if written != deflated:
        raise IntegrityError(
            f"a member recompressed to {written} bytes, not {deflated}: zlib "
            f"{zlib.ZLIB_RUNTIME_VERSION} does not remake it (it was made by another deflater, "
            "or expanded with a different zlib build)"
        )
    return written
