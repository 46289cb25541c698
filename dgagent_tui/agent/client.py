"""An asyncio client for the agent's socket: concurrent calls matched by id, pushed events queued.

One reader task owns the stream: answers resolve the future of their request (replies may come
out of order), event notifications go to ``events`` for whoever follows them. When the
connection ends every pending call fails with AgentConnectionError, and ``events`` yields None
once, so a follower learns the link is gone without polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

from dgagent.rpc import (
    PROTOCOL,
    AgentConnectionError,
    AgentNotRunning,
    AgentTimeoutError,
    ErrorCode,
    Method,
    RpcError,
    error_from_json,
)
from dgagent.rpc.protocol import request
from dgagent.rpc.records import Hello

MAX_LINE = 4 << 20  # the agent refuses requests over 1 MiB; its answers (a big listing) may be more


class AsyncAgentClient:
    """One connection to the agent, used from a single event loop."""

    def __init__(self, socket_path: Path, *, timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.hello: Hello | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._closed_reason = "not connected"

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def connect(self, client: str = "dg-tui") -> Hello:
        """Open the connection and say hello; returns the agent's hello (version, pid)."""
        path = os.fspath(self.socket_path)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path, limit=MAX_LINE), self.timeout
            )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            refused = isinstance(exc, ConnectionRefusedError)
            raise AgentNotRunning(self.socket_path, refused=refused) from exc
        except TimeoutError as exc:
            raise AgentTimeoutError(f"the agent at {path} did not accept the connection") from exc
        except OSError as exc:
            raise AgentConnectionError(f"cannot connect to {path}: {exc.strerror or exc}") from exc
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader), name="dg-tui-agent-reader")
        answer = await self.call(Method.HELLO, {"protocol": PROTOCOL, "client": client})
        self.hello = Hello.from_json(answer)
        return self.hello

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and wait for its answer; RpcError when the agent answers an error."""
        writer = self._writer
        if writer is None:
            raise AgentConnectionError(f"not connected to the agent ({self._closed_reason})")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        line = json.dumps(request(request_id, method, params), separators=(",", ":"))
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError as exc:
            raise AgentTimeoutError(
                f"the agent did not answer {method!r} within {self.timeout:g} s"
            ) from exc
        except OSError as exc:
            raise AgentConnectionError(f"the connection to the agent broke: {exc}") from exc
        finally:
            self._pending.pop(request_id, None)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._fail_pending("the client closed the connection")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        reason = "the agent closed the connection"
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    reason = "the agent sent a message larger than 4 MiB"
                    return
                self._dispatch(json.loads(line))
        except (OSError, ValueError) as exc:
            reason = f"the connection to the agent broke: {exc}"
        finally:
            self._writer = None
            self._fail_pending(reason)
            self.events.put_nowait(None)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" not in message:
            if message.get("method") == "event" and isinstance(message.get("params"), dict):
                self.events.put_nowait(message["params"])
            return
        future = self._pending.get(message["id"])
        if future is None or future.done():
            return  # an answer to a call that timed out meanwhile
        error = message.get("error")
        if isinstance(error, dict):
            future.set_exception(error_from_json(error))
        elif error is not None:
            future.set_exception(RpcError(ErrorCode.INTERNAL_ERROR, str(error)))
        else:
            future.set_result(message.get("result"))

    def _fail_pending(self, reason: str) -> None:
        self._closed_reason = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AgentConnectionError(reason))
        self._pending.clear()
