"""A synchronous client for the agent's socket, used by the CLI and the TUI's worker threads.

The wire format is JSON-RPC 2.0, one JSON object per ``\\n``-terminated UTF-8 line over a Unix
socket. What both ends share (the version, the error codes and classes) is in
:mod:`dgagent.rpc.protocol`, so importing the client never pulls in the server's asyncio
machinery.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from dgagent.errors import DgError
from dgagent.rpc.protocol import (
    AgentConnectionError,
    AgentNotRunning,
    AgentTimeoutError,
    EventType,
    error_from_json,
    request,
)
from dgagent.rpc.records import dropped

log = logging.getLogger(__name__)

MAX_BUFFERED_EVENTS = 10_000
_CHUNK = 1 << 16


class AgentClient:
    """One connection to the agent.

    Calls are synchronous; event notifications that arrive while waiting for an answer are
    buffered (at most ``MAX_BUFFERED_EVENTS``, then an ``events.dropped`` marker) and come out of
    :meth:`events`. Not safe for concurrent use by several threads: give each thread its own
    client (for example one for events and one per worker).
    """

    def __init__(self, socket_path: Path, *, timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._ids = itertools.count(1)
        self._events: deque[dict[str, Any]] = deque()
        self._tail_is_overflow = False

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Open the connection (once); raises AgentNotRunning when nothing listens."""
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(os.fspath(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            refused = isinstance(exc, ConnectionRefusedError)
            raise AgentNotRunning(self.socket_path, refused=refused) from exc
        except TimeoutError as exc:
            sock.close()
            raise AgentTimeoutError(
                f"the agent at {self.socket_path} did not accept the connection "
                f"within {self.timeout:g} s"
            ) from exc
        except OSError as exc:
            sock.close()
            raise AgentConnectionError(
                f"cannot connect to the agent at {self.socket_path}: {exc.strerror or exc}"
            ) from exc
        self._sock = sock
        self._buffer.clear()

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call ``method`` and return its result; raises RpcError when the agent answers an error.

        Event notifications read meanwhile are kept for :meth:`events`.
        """
        sock = self._require()
        request_id = next(self._ids)
        line = json.dumps(request(request_id, method, dict(params or {})), separators=(",", ":"))
        deadline = time.monotonic() + self.timeout
        try:
            sock.settimeout(self.timeout)
            sock.sendall(line.encode() + b"\n")
        except TimeoutError as exc:
            raise AgentTimeoutError(
                f"the agent did not take the {method!r} request within {self.timeout:g} s"
            ) from exc
        except OSError as exc:
            # The agent may have said why before it closed the connection (e.g. unauthorized).
            self._raise_pending_error()
            self.close()
            raise AgentConnectionError(f"the connection to the agent was lost: {exc}") from exc
        while True:
            try:
                message = self._read_message(deadline)
            except TimeoutError as exc:
                raise AgentTimeoutError(
                    f"the agent did not answer {method!r} within {self.timeout:g} s"
                ) from exc
            if message is None:
                raise AgentConnectionError(
                    f"the agent closed the connection before answering {method!r}"
                )
            if "id" not in message:
                self._notification(message)
            elif message["id"] == request_id or (message["id"] is None and "error" in message):
                if "error" in message:
                    raise error_from_json(message["error"])
                return message.get("result")
            else:
                log.debug("ignoring a late answer to request %r", message["id"])

    def subscribe(self, since: int | None = None) -> dict[str, Any]:
        """Ask for event notifications (and a replay of those after ``since``)."""
        result = self.call("events.subscribe", {} if since is None else {"since": since})
        if not isinstance(result, dict):
            raise DgError(f"the agent answered events.subscribe with {result!r}, not an object")
        return result

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield event params (buffered ones first) until none arrives for ``timeout`` seconds.

        ``None`` waits forever. The iteration also ends when the connection closes.
        """
        while True:
            if self._events:
                event = self._events.popleft()
                if not self._events:
                    self._tail_is_overflow = False
                yield event
                continue
            if self._sock is None:
                return
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                message = self._read_message(deadline)
            except TimeoutError:
                return
            if message is None:
                return
            if "id" not in message:
                self._notification(message)
            elif message["id"] is None and "error" in message:
                raise error_from_json(message["error"])

    def close(self) -> None:
        """Close the connection; events already buffered can still be read."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._buffer.clear()

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise AgentConnectionError(
                f"not connected to the agent at {self.socket_path}; call connect() first"
            )
        return self._sock

    def _read_message(self, deadline: float | None) -> dict[str, Any] | None:
        """The next JSON object from the agent, or None once it closed the connection.

        Raises the builtin TimeoutError at ``deadline``; partial input stays buffered.
        """
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                raw = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                if not raw.strip():
                    continue
                try:
                    message = json.loads(raw)
                except ValueError as exc:
                    raise DgError(f"the agent sent a malformed message ({exc})") from exc
                if not isinstance(message, dict):
                    raise DgError(f"the agent sent {type(message).__name__}, not a JSON object")
                return message
            sock = self._sock
            if sock is None:
                return None
            if deadline is None:
                sock.settimeout(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
            try:
                chunk = sock.recv(_CHUNK)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.close()
                return None
            self._buffer += chunk

    def _notification(self, message: dict[str, Any]) -> None:
        params = message.get("params")
        if message.get("method") != "event" or not isinstance(params, dict):
            log.debug("ignoring notification %r", message.get("method"))
            return
        if len(self._events) < MAX_BUFFERED_EVENTS:
            self._events.append(params)
            self._tail_is_overflow = False
            return
        # Full: the gap is at the tail, so one marker there covers everything dropped since.
        first, last = _seq_range(params)
        if self._tail_is_overflow:
            self._events[-1]["to"] = last
        else:
            self._events.append(dropped(first, last))
            self._tail_is_overflow = True

    def _raise_pending_error(self) -> None:
        """Raise an error line the agent sent before closing, if one is already here."""
        try:
            message = self._read_message(time.monotonic() + 0.1)
        except (TimeoutError, OSError, DgError):
            return
        if message is not None and message.get("id") is None and "error" in message:
            raise error_from_json(message["error"])


def _seq_range(params: dict[str, Any]) -> tuple[Any, Any]:
    if params.get("type") == EventType.EVENTS_DROPPED:
        return params.get("from"), params.get("to")
    return params.get("seq"), params.get("seq")
