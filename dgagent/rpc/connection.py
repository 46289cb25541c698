"""One client connection of the socket server: line framing, dispatch and backpressure.

Lines are read up to the server's ``max_line``; a longer one is answered with an error and
skipped, not fatal. Answers are never dropped (a client that stops reading only stalls itself:
past MAX_PENDING unanswered requests its connection stops reading); events are: a client that
falls behind gets an ``events.dropped`` marker instead of holding up the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any, Protocol

from dgagent.rpc.jsonrpc import (
    BadRequestError,
    Handler,
    Request,
    encode,
    error_line,
    parse_request,
    result_line,
    run_handler,
)
from dgagent.rpc.protocol import BUILTINS, ErrorCode, MethodNotFound, RpcError
from dgagent.rpc.records import dropped

log = logging.getLogger(__name__)

MAX_PENDING = 64  # requests per connection read but not yet answered; then stop reading it
_WRITE_BATCH = 1 << 16


class Server(Protocol):
    """What a connection uses of its server (server.RpcServer), named here so that this module
    need not import the server's."""

    @property
    def stopping(self) -> bool: ...
    @property
    def subscribers(self) -> set[Connection]: ...
    @property
    def max_line(self) -> int: ...
    @property
    def client_queue(self) -> int: ...
    @property
    def handlers(self) -> Mapping[str, Handler]: ...
    @property
    def pool(self) -> Executor | None: ...

    def call_builtin(self, conn: Connection, method: str, params: dict[str, Any]) -> Any: ...


class Connection:
    """One client: a reader that dispatches lines and a writer that drains two queues.

    Answers wait in ``_answers`` (bounded by MAX_PENDING: past that the reader stops reading);
    events wait in ``_events`` (bounded by client_queue: past that they are dropped and an
    ``events.dropped`` marker follows once there is room). Answers are written first.
    """

    def __init__(
        self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.name = "?"
        self.cursor = 0  # newest event number offered to this client (sent or dropped)
        self._reader = reader
        self._writer = writer
        self._answers: deque[bytes] = deque()
        self._events: deque[bytes] = deque()
        self._dropped: tuple[int, int] | None = None
        self._pending = 0  # lines read whose answer is not yet written
        self._handlers: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()  # there is something to write
        self._room = asyncio.Event()  # an answer was written
        self._closing = False
        self._broken = False
        self._read_task: asyncio.Task[None] | None = None

    def finish_reading(self) -> None:
        """Take no more requests (the server is stopping); those read still get their answer."""
        if self._read_task is not None:
            self._read_task.cancel()

    async def run(self) -> None:
        writer_task = asyncio.create_task(self._write_loop())
        read_task = self._read_task = asyncio.create_task(self._read_loop())
        if self.server.stopping:  # connected as the server began to stop: nothing to read
            read_task.cancel()
        try:
            # asyncio.wait, not await: finish_reading() cancels the read task, and that must
            # not look like this connection being cancelled.
            await asyncio.wait({read_task})
            # The peer may only have shut down its sending side, or the server is stopping:
            # either way finish what was asked and send every answer before closing.
            if self._handlers:
                await asyncio.wait(set(self._handlers))
            self.server.subscribers.discard(self)
            self._closing = True
            self._wake.set()
            await writer_task
        finally:
            read_task.cancel()
            writer_task.cancel()
            for task in self._handlers:
                task.cancel()
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    # -- reading --------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reader = self._reader
        with contextlib.suppress(ConnectionError):
            while not self._broken:
                if self._pending >= MAX_PENDING:
                    self._room.clear()
                    await self._room.wait()
                    continue
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:  # EOF; a last line may lack its \n
                    if exc.partial.strip():
                        self._handle(exc.partial)
                    return
                except asyncio.LimitOverrunError:
                    self._pending += 1
                    limit = self.server.max_line
                    self._send(
                        error_line(
                            None,
                            RpcError(
                                ErrorCode.INVALID_REQUEST, f"message larger than {limit} bytes"
                            ),
                        )
                    )
                    if not await self._discard_line():
                        return
                    continue
                self._handle(line)

    async def _discard_line(self) -> bool:
        """Drop input up to and including the next newline; False at EOF."""
        while True:
            try:
                await self._reader.readuntil(b"\n")
                return True
            except asyncio.LimitOverrunError as exc:
                await self._reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                return False

    def _handle(self, line: bytes) -> None:
        if not line.strip():
            return  # a blank line (someone pressed Enter in socat) is not a message
        self._pending += 1
        try:
            request = parse_request(line)
        except BadRequestError as exc:
            self._send(exc.answer)
            return
        if request.method in BUILTINS:
            try:
                result = self.server.call_builtin(self, request.method, request.params)
            except RpcError as exc:
                self._answer(request, error_line(request.id, exc))
            else:
                self._answer(request, result_line(request, result))
            return
        handler = self.server.handlers.get(request.method)
        if handler is None:
            error = MethodNotFound(f"unknown method {request.method!r}")
            self._answer(request, error_line(request.id, error))
            return
        task = asyncio.create_task(self._call(handler, request))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _call(self, handler: Handler, request: Request) -> None:
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(self.server.pool, run_handler, handler, request)
        self._answer(request, line)

    def _answer(self, request: Request, line: bytes) -> None:
        if request.notification:  # JSON-RPC: never answer a notification, not even an error
            self._pending -= 1
            self._room.set()
        else:
            self._send(line)

    def _send(self, line: bytes) -> None:
        self._answers.append(line)
        self._wake.set()

    # -- events ---------------------------------------------------------------------------------

    def offer(self, seq: int, line: bytes) -> None:
        """Queue event ``seq`` unless already offered; drop it (and mark the gap) when full."""
        if seq <= self.cursor:
            return
        self.cursor = seq
        if self._dropped is not None and not self._flush_marker():
            self._dropped = (self._dropped[0], seq)
        elif len(self._events) >= self.server.client_queue:
            self._dropped = (seq, seq)
        else:
            self._events.append(line)
            self._wake.set()

    def offer_lost(self, first: int, last: int) -> None:
        """Events ``first..last`` are gone from the bus before we could queue them."""
        first = max(first, self.cursor + 1)
        if last < first:
            return
        self.cursor = last
        self._dropped = (first, last) if self._dropped is None else (self._dropped[0], last)
        self._flush_marker()

    def _flush_marker(self) -> bool:
        """Queue the pending ``events.dropped`` marker if there is room; True when none waits."""
        if self._dropped is None:
            return True
        if len(self._events) >= self.server.client_queue:
            return False
        first, last = self._dropped
        self._dropped = None
        params = dropped(first, last)
        self._events.append(encode({"jsonrpc": "2.0", "method": "event", "params": params}))
        self._wake.set()
        return True

    # -- writing --------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            while True:
                if not self._answers and not self._events:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                chunk, answers = self._take()
                self._writer.write(chunk)
                await self._writer.drain()
                if answers:
                    self._pending -= answers
                    self._room.set()
        except OSError as exc:  # the peer went away; the reader sees EOF next
            log.debug("client %s: write failed: %s", self.name, exc)
            self._broken = True
            self._room.set()
            self._writer.close()

    def _take(self) -> tuple[bytes, int]:
        parts: list[bytes] = []
        size = answers = 0
        while self._answers and size < _WRITE_BATCH:
            parts.append(self._answers.popleft())
            size += len(parts[-1])
            answers += 1
        while self._events and size < _WRITE_BATCH:
            parts.append(self._events.popleft())
            size += len(parts[-1])
        self._flush_marker()
        return b"".join(parts), answers
