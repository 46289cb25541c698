"""archive-v2 and -v3 deltas: a plan of the target diffed by xdelta3, plus one HDiffPatch part
per native member.

The two versions share this container and differ only in the reference's *source form*, which
the caller passes as the reference's second side: archive-v3 (made now) uses the inflated form
(``archive.inflate``), archive-v2 (still read) the expanded form.

The target's expanded form becomes a *plan* (``archive.PLAN_MAGIC``) in which

- a member whose deflated bytes are those of a reference member becomes an ``R`` record (copy
  them from ``reference.bin``: nothing to inflate, diff or recompress; the bytes were compared
  when the plan was made), whether the target's expanded form holds it inflated or verbatim;
- a machine-code member (``archive_hdiff.is_machine_code``) between ``MIN_MEMBER`` and
  ``MAX_MEMBER`` whose name (or its name without digits and hashes) a reference member has
  becomes an ``H`` record, its plain bytes an HDiffPatch part against that member's plain bytes;
- everything else stays as in the expanded form.

The delta is a container::

    DELTA_MAGIC  u32 count  count x (c differ, u64 length, u64 source offset, u64 source length)
    then the parts, in order

Part 0 is ``X``: the xdelta3 (VCDIFF) delta of the plan against the reference's source form.
An ``H`` part is an HDiffPatch patch whose old data is the given slice of the source form. At
most one ``S`` part, which no record names, lists split points for large members
(``archive_split``): a reader that knows it recompresses those members in pieces on every core,
one that does not (dg-agent before the split points) ignores it and recompresses them whole.
Rebuilding decodes part 0 into the plan and walks it (``archive.rebuild``); the caller checks the
file's SHA-256.
"""

from __future__ import annotations

import bisect
import re
import shutil
import struct
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Literal, cast

from dgagent.engine import archive, archive_hdiff, archive_split, archive_zip
from dgagent.engine.archive_deflate import CHUNK, RECORD, Params
from dgagent.engine.archive_recompress import THREADS, Recompressor
from dgagent.engine.archive_split import Split
from dgagent.engine.codec import Xdelta3
from dgagent.errors import IntegrityError

__all__ = ["DELTA_MAGIC", "Made", "decode", "encode"]

DELTA_MAGIC = b"DG-ARCHIVE-DELTA-2\n"
_COUNT = struct.Struct("<I")
_PART = struct.Struct("<cQQQ")
_MAX_PARTS = 1 << 16
XDELTA3 = b"X"
Sides = tuple[Path, Path]
"""A file and its expanded form."""
HDIFFPATCH = b"H"
SPLITS = b"S"
PREFETCH = archive_hdiff.MAX_MEMBER
"""Bytes of HDiffPatch members a reader makes ahead, while xdelta3 decodes the plan."""


@dataclass
class Made:
    """What one archive-v2 encode put where."""

    unchanged: int = 0
    """Members copied from the reference (R records)."""
    shared: int = 0
    """Changed verbatim members whose start or end is copied from their reference counterpart."""
    hdiff: int = 0
    """Members diffed by HDiffPatch (H records)."""
    plan_bytes: int = 0
    """Size of the plan xdelta3 diffed."""
    split: int = 0
    """Members given split points, so that a reader recompresses them on every core."""


@dataclass(frozen=True)
class _Part:
    differ: bytes
    path: Path
    source: int
    source_size: int


def _shape(name: str) -> str:
    """A member name without its version numbers and hashes, to pair renamed libraries.

    >>> _shape("numpy.libs/libscipy_openblas64_-6bb31eeb.so")
    'numpy.libs/libscipy_openblas#_-#.so'
    """
    return re.sub(r"[0-9a-f]{8,}|\d+", "#", name)


class _Reference:
    """What the plan needs to know of the reference: its D records, by content and by name."""

    def __init__(self, original: Path, expanded: Path) -> None:
        self.by_deflated: dict[tuple[int, int], list[int]] = {}
        """Where D records' deflated bytes start in the reference file, by (CRC-32, size)."""
        self.by_origin: dict[int, archive.Record] = {}
        with expanded.open("rb") as f:
            for record in archive.records(f):
                if record.tag == b"D":
                    key = (record.crc, record.stored)
                    self.by_deflated.setdefault(key, []).append(record.origin)
                    self.by_origin[record.origin] = record
        self.by_name: dict[str, archive.Record] = {}
        shapes: dict[str, list[archive.Record]] = {}
        with original.open("rb") as f:
            size = original.stat().st_size
            for start, member in archive_zip.data_offsets(
                f, size, archive_zip.members(f, size)
            ).items():
                found = self.by_origin.get(start)
                if found is not None:
                    self.by_name[member.name] = found
                    shapes.setdefault(_shape(member.name), []).append(found)
        # A shape two members share pairs nothing: which one is meant is a guess.
        self.by_shape = {shape: same[0] for shape, same in shapes.items() if len(same) == 1}

    def copy_of(
        self, ref_file: BinaryIO, tgt: BinaryIO, start: int, n: int, crc: int
    ) -> int | None:
        """Where in the reference file a member has the ``n`` deflated bytes the target has at
        ``start`` (found by CRC-32 and size, then compared), or None."""
        return next(
            (
                at
                for at in self.by_deflated.get((crc, n), [])
                if _same_bytes(tgt, start, ref_file, at, n)
            ),
            None,
        )

    def counterpart(self, name: str | None) -> archive.Record | None:
        if name is None:
            return None
        return self.by_name.get(name) or self.by_shape.get(_shape(name))


def _same_bytes(a: BinaryIO, a_at: int, b: BinaryIO, b_at: int, n: int) -> bool:
    a.seek(a_at)
    b.seek(b_at)
    while n:
        want = min(CHUNK, n)
        block = a.read(want)
        if not block or block != b.read(want):
            return False
        n -= len(block)
    return True


def _read(src: BinaryIO, at: int, n: int) -> bytes:
    src.seek(at)
    data = src.read(n)
    if len(data) != n:
        raise IntegrityError("an expanded form is shorter than its records say")
    return data


def _splits(record: archive.Record, tgt: BinaryIO, plain: bytes) -> list[Split]:
    """Split points for a changed member the reader will recompress in the background."""
    if not Recompressor.wants(record.size) or record.size < archive_split.MIN_PLAIN:
        return []
    _, level, memlevel, strategy, wbits, _, _, _ = RECORD.unpack(record.header)
    params = Params(level, memlevel, strategy, wbits)
    return archive_split.choose(params, _read(tgt, record.origin, record.stored), plain)


Choice = tuple[archive.Record, int | None, archive.Record | None]
"""A record of the target's expanded form; where its deflated bytes are in the reference file if
a reference member has them (an R record), or else the reference member HDiffPatch diffs it
against (an H record)."""


def _classify(
    ref: _Reference, exp: BinaryIO, tgt: BinaryIO, ref_file: BinaryIO, names: dict[int, str]
) -> list[Choice]:
    """What each record of the target's expanded form becomes in the plan."""
    chosen: list[Choice] = []
    for record in list(archive.records(exp)):  # the loop reads ``exp`` too
        if record.tag == b"V":
            chosen.append((record, None, None))
            continue
        same = ref.copy_of(ref_file, tgt, record.origin, record.stored, record.crc)
        old = None if same is not None else ref.counterpart(names.get(record.origin))
        if old is not None:
            exp.seek(record.at)
            if not (
                archive_hdiff.MIN_MEMBER <= record.size <= archive_hdiff.MAX_MEMBER
                and old.size <= archive_hdiff.MAX_MEMBER
                and archive_hdiff.is_machine_code(exp.read(16))
            ):
                old = None
        chosen.append((record, same, old))
    return chosen


def _verbatim_copies(
    ref: _Reference,
    tgt: BinaryIO,
    tsize: int,
    ref_file: BinaryIO,
    expanded: set[int],
    *,
    members: dict[int, archive_zip.Member],
    made: Made,
) -> list[tuple[int, int, int]]:
    """(start, length, where in the reference file) of the deflated bytes of target members left
    verbatim (not in ``expanded``) that the reference file has too, sorted: whole members a
    reference member has (by CRC-32 and length, then compared), and the shared start and end of
    a changed member and its reference counterpart (``_shared_ends``).

    Members zlib does not reproduce, and members deflated to stored blocks only, stay verbatim
    in the target's expanded form, but the reference's inflated form undoes them, so xdelta3
    would no longer find them there, or only in pieces between stored-block headers: the bytes
    both have are copied instead. Counted in ``made``."""
    found: list[tuple[int, int, int]] = []
    for start, member in sorted(members.items()):
        length = member.csize
        if not member.deflated or start + length > tsize or start in expanded:
            continue
        if (same := ref.copy_of(ref_file, tgt, start, length, member.crc)) is not None:
            found.append((start, length, same))
            made.unchanged += 1
        elif (old := ref.counterpart(member.name)) is not None:
            ends = _shared_ends(tgt, start, length, ref_file, old)
            found += ends
            made.shared += bool(ends)
    return found


SHARED_MIN = 4096
"""Bytes a changed verbatim member must share with its counterpart, at its start or its end,
for them to become an R record (about 20 bytes of plan, where xdelta3 would copy them in pieces
between stored-block headers, or a Huffman-coded member's not at all)."""
_SHARED_MAX = 64 * 1024**2


def _shared_ends(
    tgt: BinaryIO, start: int, length: int, ref_file: BinaryIO, counterpart: archive.Record
) -> list[tuple[int, int, int]]:
    """The R ranges of a changed verbatim member: the deflated bytes it starts and ends with
    that its reference counterpart starts and ends with too, when at least ``SHARED_MIN``.

    botocore's ``.json.gz`` members, stored again in the wheel, change in the gzip header's
    mtime at every release, most of them nowhere else: all after that is the reference's."""
    ref_at, ref_length = counterpart.origin, counterpart.stored
    if max(length, ref_length) > _SHARED_MAX:
        return []
    new, old = _read(tgt, start, length), _read(ref_file, ref_at, ref_length)
    head = _alike(new, old, "little")
    tail = _alike(new[head:], old[head:], "big")
    found = []
    if head >= SHARED_MIN:
        found.append((start, head, ref_at))
    if tail >= SHARED_MIN:
        found.append((start + length - tail, tail, ref_at + ref_length - tail))
    return found


def _alike(a: bytes, b: bytes, end: Literal["little", "big"]) -> int:
    """How many bytes ``a`` and ``b`` start with alike ("little": read from the front), or end
    with alike ("big"). The two as integers, XORed: the lowest set bit is the first difference
    from that side, all in C, at memory speed."""
    n = min(len(a), len(b))
    if end == "little":
        a, b = a[:n], b[:n]
    else:
        a, b = a[len(a) - n :], b[len(b) - n :]
    x = int.from_bytes(a, end) ^ int.from_bytes(b, end)
    return n if x == 0 else ((x & -x).bit_length() - 1) // 8


def _write_verbatim(
    record: archive.Record, exp: BinaryIO, plan: BinaryIO, copies: list[tuple[int, int, int]]
) -> None:
    """Write a V record of the target's expanded form into the plan, with the ranges inside it
    that the reference file has (``copies``, sorted) as R records."""
    end = record.origin + record.size
    pos = record.origin

    def verbatim_to(upto: int) -> None:
        if upto > pos:
            plan.write(archive.verbatim_header(upto - pos))
            exp.seek(record.at + pos - record.origin)
            shutil.copyfileobj(_Slice(exp, upto - pos), plan, CHUNK)

    first = bisect.bisect_left(copies, (record.origin, 0, 0))
    for start, length, same in copies[first:]:
        if start + length > end:
            break
        verbatim_to(start)
        plan.write(archive.reference_record(same, length))
        pos = start + length
    verbatim_to(end)


def _write_plan(
    reference: Sides,
    target: Sides,
    plan: BinaryIO,
    work: Path,
    *,
    split: bool,
    on_plan: Callable[[], None] | None = None,
) -> tuple[list[_Part], Made]:
    """Write the plan of ``target`` and its HDiffPatch parts; (the parts after part 0, counts).
    With ``split``, large changed members get split points (an ``S`` part). ``on_plan`` is
    called at once when no member goes to HDiffPatch (xdelta3, reading the plan as it comes,
    is then the only heavy work on it)."""
    (reference_file, ref_expanded), (target_file, target_expanded) = reference, target
    ref = _Reference(reference_file, ref_expanded)
    made = Made()
    parts: list[_Part] = []
    table: dict[int, list[Split]] = {}
    with (
        target_file.open("rb") as tgt,
        reference_file.open("rb") as ref_file,
        target_expanded.open("rb") as exp,
    ):
        tsize = target_file.stat().st_size
        members = archive_zip.data_offsets(tgt, tsize, archive_zip.members(tgt, tsize))
        plan.write(archive.PLAN_MAGIC)
        names = {start: m.name for start, m in members.items()}
        chosen = _classify(ref, exp, tgt, ref_file, names)
        expanded = {r.origin for r, _, _ in chosen if r.tag == b"D"}
        copies = _verbatim_copies(ref, tgt, tsize, ref_file, expanded, members=members, made=made)
        jobs = [(r.at, r.size, old.at, old.size) for r, _, old in chosen if old is not None]
        if not jobs and on_plan is not None:
            on_plan()
        with _Diffs(jobs, target_expanded, ref_expanded) as diffs:
            for record, same, old in chosen:
                if record.tag == b"V":
                    _write_verbatim(record, exp, plan, copies)
                    continue
                if same is not None:
                    plan.write(archive.reference_record(same, record.stored))
                    made.unchanged += 1
                    continue
                if old is not None:
                    new, patch = diffs.next()
                    if patch is not None:
                        path = work / f"part-{len(parts) + 1}.hdiff"
                        path.write_bytes(patch)
                        parts.append(_Part(HDIFFPATCH, path, old.at, old.size))
                        plan.write(archive.part_record(record.header, len(parts)))
                        made.hdiff += 1
                        if split and (found := _splits(record, tgt, new)):
                            table[record.origin] = found
                        continue
                if split and (found := _splits(record, tgt, _read(exp, record.at, record.size))):
                    table[record.origin] = found
                plan.write(record.header)
                exp.seek(record.at)
                shutil.copyfileobj(_Slice(exp, record.size), plan, CHUNK)
        plan.write(archive.end_record(tsize))
    if table:
        path = work / "splits"
        path.write_bytes(archive_split.pack(table))
        parts.append(_Part(SPLITS, path, 0, 0))
        made.split = len(table)
    return parts, made


class _Diffs:
    """HDiffPatch diffs of the plan's machine-code members, made on worker threads in the order
    the plan needs them (HDiffPatch releases the GIL). Members run side by side only while the
    old and new members in flight add up to at most ``archive_hdiff.MAX_MEMBER`` bytes, so memory
    stays within what one diff of the largest member allowed may take."""

    def __init__(self, jobs: list[tuple[int, int, int, int]], new: Path, old: Path) -> None:
        self._jobs = deque(jobs)  # (new member at, size, old member at, size)
        self._new, self._old = new, old
        self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="hdiff")
        self._running: deque[tuple[int, Future[tuple[bytes, bytes | None]]]] = deque()
        self._bytes = 0
        self._start()

    def _start(self) -> None:
        while self._jobs:
            new_at, new_size, old_at, old_size = self._jobs[0]
            weight = new_size + old_size
            if self._running and self._bytes + weight > archive_hdiff.MAX_MEMBER:
                return
            self._jobs.popleft()
            self._bytes += weight
            job = self._pool.submit(self._diff, new_at, new_size, old_at, old_size)
            self._running.append((weight, job))

    def _diff(
        self, new_at: int, new_size: int, old_at: int, old_size: int
    ) -> tuple[bytes, bytes | None]:
        with self._new.open("rb") as n, self._old.open("rb") as o:
            new = _read(n, new_at, new_size)
            return new, archive_hdiff.diff(_read(o, old_at, old_size), new)

    def next(self) -> tuple[bytes, bytes | None]:
        """The next member's plain bytes and its patch (None: it stays with xdelta3)."""
        weight, job = self._running.popleft()
        try:
            return job.result()
        finally:
            self._bytes -= weight
            self._start()

    def __enter__(self) -> _Diffs:
        return self

    def __exit__(self, *exc: object) -> None:
        for _, job in self._running:
            job.cancel()
        self._pool.shutdown(wait=True)


class _Slice:
    """The next ``n`` bytes of a file, as a readable object for copyfileobj."""

    def __init__(self, src: BinaryIO, n: int) -> None:
        self._src, self._left = src, n

    def read(self, size: int = -1) -> bytes:
        want = self._left if size < 0 else min(size, self._left)
        data = self._src.read(want) if want else b""
        if want and not data:
            raise IntegrityError("an expanded form is shorter than its records say")
        self._left -= len(data)
        return data


def encode(
    codec: Xdelta3,
    reference: Sides,
    target: Sides,
    out: Path,
    work: Path,
    *,
    split: bool = True,
    on_plan: Callable[[], None] | None = None,
) -> Made:
    """Write the archive-v2 delta of ``target`` against ``reference`` into ``out``; with
    ``split``, give large changed members split points. The plan goes to xdelta3 as it is
    written, so the two overlap. ``on_plan`` is called (once or more) when xdelta3 is left
    alone on one core: once the plan is written, or as it starts when nothing goes to
    HDiffPatch."""
    vcdiff = work / "plan.vcdiff"
    with codec.encoding(reference[1], vcdiff, subject=target[0]) as pipe:
        plan = _Counting(pipe)
        parts, made = _write_plan(
            reference, target, cast(BinaryIO, plan), work, split=split, on_plan=on_plan
        )
        made.plan_bytes = plan.written
        if on_plan is not None:
            on_plan()
    parts.insert(0, _Part(XDELTA3, vcdiff, 0, 0))
    with out.open("wb") as f:
        f.write(DELTA_MAGIC + _COUNT.pack(len(parts)))
        for part in parts:
            f.write(
                _PART.pack(part.differ, part.path.stat().st_size, part.source, part.source_size)
            )
        for part in parts:
            with part.path.open("rb") as src:
                shutil.copyfileobj(src, f, CHUNK)
            part.path.unlink()
    return made


class _Counting:
    """A writer that passes bytes on and counts them (the plan's size, for ``Made``)."""

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink, self.written = sink, 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return self._sink.write(data)


class _Parts:
    """The reference and a container's parts, as ``archive.rebuild`` asks for them."""

    def __init__(self, delta: BinaryIO, reference: BinaryIO, ref_expanded: BinaryIO) -> None:
        self.delta, self.reference, self.ref_expanded = delta, reference, ref_expanded
        if delta.read(len(DELTA_MAGIC)) != DELTA_MAGIC:
            raise IntegrityError("not an archive-v2 delta (bad magic)")
        (count,) = _COUNT.unpack(_read_all(delta, _COUNT.size))
        if not 0 < count <= _MAX_PARTS:
            raise IntegrityError(f"an archive-v2 delta claims {count} parts")
        table = [_PART.unpack(_read_all(delta, _PART.size)) for _ in range(count)]
        self.parts: list[tuple[bytes, int, int, int, int]] = []
        at = delta.tell()
        for differ, length, source, source_size in table:
            self.parts.append((differ, at, length, source, source_size))
            at += length
        if self.parts[0][0] != XDELTA3:
            raise IntegrityError("an archive-v2 delta does not start with its xdelta3 part")
        self._splits: dict[int, list[Split]] = {}
        for differ, at, length, _, _ in self.parts:
            if differ == SPLITS:
                delta.seek(at)
                self._splits = archive_split.unpack(delta, length)
        self._ready: dict[int, bytes] = {}

    def prefetch(self, budget: int) -> None:
        """Apply HDiffPatch parts, in order, until their members make ``budget`` bytes: what
        the rebuild asks for first, made while xdelta3 decodes the plan on another core."""
        held = 0
        for part, (differ, *_) in enumerate(self.parts):
            if differ == HDIFFPATCH and held < budget:
                self._ready[part] = self._apply(part)
                held += len(self._ready[part])

    def splits(self, origin: int) -> list[Split]:
        return self._splits.get(origin, [])

    def extract_plan_delta(self, out: Path) -> None:
        _, at, length, _, _ = self.parts[0]
        self.delta.seek(at)
        with out.open("wb") as f:
            shutil.copyfileobj(_Slice(self.delta, length), f, CHUNK)

    def copy_reference(self, offset: int, length: int, out: BinaryIO) -> None:
        if length <= CHUNK:  # most unchanged members: one read, not a copy loop
            out.write(_read(self.reference, offset, length))
            return
        self.reference.seek(offset)
        shutil.copyfileobj(_Slice(self.reference, length), out, CHUNK)

    def member(self, part: int, size: int) -> bytes:
        if not 0 < part < len(self.parts) or self.parts[part][0] != HDIFFPATCH:
            raise IntegrityError(
                f"an archive-v2 plan names part {part}, which is no HDiffPatch part"
            )
        if size > archive_hdiff.MAX_MEMBER:
            raise IntegrityError("an archive-v2 part is larger than any this dg-agent makes")
        new = self._ready.pop(part) if part in self._ready else self._apply(part)
        if len(new) != size:
            raise IntegrityError(f"a member's HDiffPatch part made {len(new)} bytes, not {size}")
        return new

    def _apply(self, part: int) -> bytes:
        _, at, length, source, source_size = self.parts[part]
        if source_size > archive_hdiff.MAX_MEMBER:
            raise IntegrityError("an archive-v2 part is larger than any this dg-agent makes")
        old = _read(self.ref_expanded, source, source_size)
        return archive_hdiff.apply(old, _read(self.delta, at, length))


def _read_all(src: BinaryIO, n: int) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise IntegrityError("an archive-v2 delta is truncated")
    return data


def decode(codec: Xdelta3, reference: Sides, delta: Path, out: Path, work: Path) -> None:
    """Rebuild the file an archive-v2 ``delta`` describes into ``out`` (SHA-256 not checked)."""
    (reference_file, ref_expanded) = reference
    plan_delta, plan = work / "plan.in.vcdiff", work / "plan.in"
    try:
        with (
            delta.open("rb") as d,
            reference_file.open("rb") as r,
            ref_expanded.open("rb") as e,
        ):
            parts = _Parts(d, r, e)
            parts.extract_plan_delta(plan_delta)
            decoding = codec.start_decode(ref_expanded, plan_delta, plan)
            try:
                parts.prefetch(PREFETCH)
            finally:
                decoding.wait()
            with plan.open("rb") as src, out.open("wb") as dest:
                archive.rebuild(src, dest, parts)
    finally:
        for path in (plan_delta, plan):
            path.unlink(missing_ok=True)
