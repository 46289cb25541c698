"""Recompressing members on every core while the rebuild walks on.

Rebuilding an archive delta is bound by zlib: every member that is not copied whole from the
reference is compressed again. zlib releases the GIL, so members go to worker threads: small ones
in batches of about ``BATCH`` plain bytes (a pure-Python wheel changes hundreds of small members
per release), large ones alone, and a member the delta gives split points for
(``archive_split``) in pieces side by side whose bits are then spliced. The rebuild leaves a hole
of each member's recorded deflated size in the output and writes the result there when it is done
and checked. Members above ``MAX_PLAIN`` stream through zlib on the walking thread as before.
Jobs wait in order; once more than ``QUEUED_PLAIN`` plain bytes (or ``QUEUED_JOBS`` jobs) are
waiting, the oldest is landed first, so memory stays within about 2 x (``QUEUED_PLAIN`` +
``MAX_PLAIN``), 200 MB.
"""

from __future__ import annotations

import io
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO

from dgagent.engine import archive_split
from dgagent.engine.archive_deflate import RECORD, THREADS, Params, read_stream
from dgagent.engine.archive_split import Split
from dgagent.errors import IntegrityError

__all__ = ["BATCH", "MAX_PLAIN", "QUEUED_JOBS", "QUEUED_PLAIN", "THREADS", "Recompressor"]

BATCH = 256 * 1024
MAX_PLAIN = 32 * 1024**2
QUEUED_PLAIN = 2 * MAX_PLAIN
QUEUED_JOBS = 4 * THREADS


def _recompress(header: bytes, plain: bytes) -> bytes:
    out = io.BytesIO()
    read_stream(io.BytesIO(plain), out, header)  # checks the CRC-32 and the deflated size
    return out.getvalue()


def _recompress_all(members: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [_recompress(header, plain) for header, plain in members]


@dataclass
class _Job:
    """Members in flight: where each goes in the output, and how its bytes are made."""

    holes: list[tuple[int, bytes]] = field(default_factory=list)
    """(offset in the output, record header) per member."""
    plain: int = 0
    batch: Future[list[bytes]] | None = None
    pieces: list[Future[bytes]] = field(default_factory=list)
    splits: list[Split] = field(default_factory=list)
    crc: Future[int] | None = None
    """The plain bytes' CRC-32, for a split member (others are checked by read_stream)."""

    def results(self) -> list[bytes]:
        if self.batch is not None:
            return self.batch.result()
        ((_, header),) = self.holes
        _, _, _, _, _, crc, deflated, _ = RECORD.unpack(header)
        data = archive_split.splice([p.result() for p in self.pieces], self.splits, deflated)
        if self.crc is None:
            raise IntegrityError("a split member was queued without its CRC-32")
        running = self.crc.result()
        if running != crc:
            raise IntegrityError(f"a member's CRC-32 is {running:08x}, recorded {crc:08x}")
        return [data]

    def cancel(self) -> None:
        for future in [self.batch, self.crc, *self.pieces]:
            if future is not None:
                future.cancel()


class Recompressor:
    """Recompress D records into ``out`` in the background; use as a context manager, and call
    ``finish`` before reading ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="recompress")
        self._queued: deque[_Job] = deque()
        self._queued_plain = 0
        self._batch = _Job()
        self._batch_members: list[tuple[bytes, bytes]] = []

    @staticmethod
    def wants(plain_size: int) -> bool:
        return plain_size <= MAX_PLAIN

    def add(self, header: bytes, plain: bytes, splits: list[Split] | None = None) -> int:
        """Queue one D record (its header, plain bytes and split points, if the delta gave any);
        returns its deflated size."""
        _, level, memlevel, strategy, wbits, _, deflated, _ = RECORD.unpack(header)
        at = self.out.tell()
        self.out.seek(at + deflated)
        if splits:
            archive_split.check(splits, len(plain), deflated)
            params = Params(level, memlevel, strategy, wbits)
            starts = [0, *(p for p, _ in splits)]
            ends = [*starts[1:], len(plain)]
            pieces = [
                self._pool.submit(archive_split.compress_piece, params, plain, start, end)
                for start, end in zip(starts, ends, strict=True)
            ]
            crc = self._pool.submit(zlib.crc32, plain)
            self._queue(_Job([(at, header)], len(plain), None, pieces, list(splits), crc))
        else:
            self._batch.holes.append((at, header))
            self._batch.plain += len(plain)
            self._batch_members.append((header, plain))
            if self._batch.plain >= BATCH:
                self._send_batch()
        return int(deflated)

    def _send_batch(self) -> None:
        if not self._batch_members:
            return
        job, members = self._batch, self._batch_members
        self._batch, self._batch_members = _Job(), []
        job.batch = self._pool.submit(_recompress_all, members)
        self._queue(job)

    def _queue(self, job: _Job) -> None:
        self._queued.append(job)
        self._queued_plain += job.plain
        while len(self._queued) > 1 and (
            self._queued_plain > QUEUED_PLAIN or len(self._queued) > QUEUED_JOBS
        ):
            self._land()

    def _land(self) -> None:
        job = self._queued.popleft()
        self._queued_plain -= job.plain
        end = self.out.tell()
        for (at, header), data in zip(job.holes, job.results(), strict=True):
            deflated = RECORD.unpack(header)[6]
            if len(data) != deflated:  # a hole of the wrong size would shift everything after
                raise IntegrityError(f"a member recompressed to {len(data)} bytes, not {deflated}")
            self.out.seek(at)
            self.out.write(data)
        self.out.seek(end)

    def finish(self) -> None:
        self._send_batch()
        while self._queued:
            self._land()

    def __enter__(self) -> Recompressor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for job in self._queued:
            job.cancel()
        self._pool.shutdown(wait=True)
