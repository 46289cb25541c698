"""Recompressing large members on every core while the rebuild walks on.

Rebuilding an archive delta is bound by zlib: every member that is not copied whole from the
reference is compressed again. zlib releases the GIL, so members of at least ``MIN_PLAIN`` bytes
go to worker threads; the rebuild leaves a hole of the member's recorded deflated size in the
output and writes the result there when it is done (and checked). A member the delta gives split
points for (``archive_split``) is compressed in pieces side by side and its bits spliced. At most
``IN_FLIGHT`` members and one more read, each at most ``MAX_PLAIN`` bytes (larger ones stream as
before), so memory stays within about (``IN_FLIGHT`` + 1) x 2 x ``MAX_PLAIN`` (200 MB).
"""

from __future__ import annotations

import io
import os
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

from dgagent.engine import archive_split
from dgagent.engine.archive_deflate import RECORD, Params, read_stream
from dgagent.engine.archive_split import Split
from dgagent.errors import IntegrityError

__all__ = ["IN_FLIGHT", "MAX_PLAIN", "MIN_PLAIN", "THREADS", "Recompressor"]

MIN_PLAIN = 512 * 1024
MAX_PLAIN = 32 * 1024**2
IN_FLIGHT = 2
THREADS = max(2, min(8, os.cpu_count() or 2))


def _recompress(header: bytes, plain: bytes) -> bytes:
    out = io.BytesIO()
    read_stream(io.BytesIO(plain), out, header)  # checks the CRC-32 and the deflated size
    return out.getvalue()


@dataclass(frozen=True)
class _Pending:
    at: int
    header: bytes
    pieces: list[Future[bytes]]
    splits: list[Split]
    crc: Future[int] | None
    """The plain bytes' CRC-32, for a split member (a whole one is checked by read_stream)."""

    def result(self) -> bytes:
        if not self.splits:
            return self.pieces[0].result()
        _, _, _, _, _, crc, deflated, _ = RECORD.unpack(self.header)
        data = archive_split.splice([p.result() for p in self.pieces], self.splits, deflated)
        if self.crc is None:
            raise IntegrityError("a split member was queued without its CRC-32")
        running = self.crc.result()
        if running != crc:
            raise IntegrityError(f"a member's CRC-32 is {running:08x}, recorded {crc:08x}")
        return data


class Recompressor:
    """Recompress D records into ``out`` in the background; use as a context manager, and call
    ``finish`` before reading ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="recompress")
        self._pending: deque[_Pending] = deque()

    @staticmethod
    def wants(plain_size: int) -> bool:
        return MIN_PLAIN <= plain_size <= MAX_PLAIN

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
            self._pending.append(_Pending(at, header, pieces, list(splits), crc))
        else:
            whole = self._pool.submit(_recompress, header, plain)
            self._pending.append(_Pending(at, header, [whole], [], None))
        while len(self._pending) > IN_FLIGHT:
            self._land()
        return int(deflated)

    def _land(self) -> None:
        pending = self._pending.popleft()
        data = pending.result()
        deflated = RECORD.unpack(pending.header)[6]
        if len(data) != deflated:  # read_stream checked it; a hole of the wrong size is fatal
            raise IntegrityError(f"a member recompressed to {len(data)} bytes, not {deflated}")
        end = self.out.tell()
        self.out.seek(pending.at)
        self.out.write(data)
        self.out.seek(end)

    def finish(self) -> None:
        while self._pending:
            self._land()

    def __enter__(self) -> Recompressor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for pending in self._pending:
            for future in pending.pieces:
                future.cancel()
        self._pool.shutdown(wait=True)
