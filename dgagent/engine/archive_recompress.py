"""Recompressing large members on the second core while the rebuild walks on.

Rebuilding an archive delta is bound by zlib: every member that is not copied whole from the
reference is compressed again. zlib releases the GIL, so members of at least ``MIN_PLAIN`` bytes
go to worker threads; the rebuild leaves a hole of the member's recorded deflated size in the
output and writes the result there when it is done (and checked). At most ``IN_FLIGHT`` members
and one more read, each at most ``MAX_PLAIN`` bytes (larger ones stream as before), so memory
stays within about (``IN_FLIGHT`` + 1) x 2 x ``MAX_PLAIN`` (200 MB).
"""

from __future__ import annotations

import io
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import BinaryIO

from dgagent.engine.archive_deflate import RECORD, read_stream
from dgagent.errors import IntegrityError

__all__ = ["IN_FLIGHT", "MAX_PLAIN", "MIN_PLAIN", "Recompressor"]

MIN_PLAIN = 512 * 1024
MAX_PLAIN = 32 * 1024**2
IN_FLIGHT = 2


def _recompress(header: bytes, plain: bytes) -> bytes:
    out = io.BytesIO()
    read_stream(io.BytesIO(plain), out, header)  # checks the CRC-32 and the deflated size
    return out.getvalue()


class Recompressor:
    """Recompress D records into ``out`` in the background; use as a context manager, and call
    ``finish`` before reading ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self._pool = ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="recompress")
        self._pending: deque[tuple[int, int, Future[bytes]]] = deque()

    @staticmethod
    def wants(plain_size: int) -> bool:
        return MIN_PLAIN <= plain_size <= MAX_PLAIN

    def add(self, header: bytes, plain: bytes) -> int:
        """Queue one D record (its header and plain bytes); returns its deflated size."""
        deflated = int(RECORD.unpack(header)[6])
        at = self.out.tell()
        self.out.seek(at + deflated)
        self._pending.append((at, deflated, self._pool.submit(_recompress, header, plain)))
        while len(self._pending) > IN_FLIGHT:
            self._land()
        return deflated

    def _land(self) -> None:
        at, deflated, future = self._pending.popleft()
        data = future.result()
        if len(data) != deflated:  # read_stream checked it; a hole of the wrong size is fatal
            raise IntegrityError(f"a member recompressed to {len(data)} bytes, not {deflated}")
        end = self.out.tell()
        self.out.seek(at)
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
        for _, _, future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
