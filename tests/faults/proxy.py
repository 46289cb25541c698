"""A fault-injecting HTTP proxy between boto3 and the S3 emulator, on 127.0.0.1.

It forwards plain HTTP/1.1 (keep-alive, Content-Length or chunked bodies) and, per request, applies
the first matching rule: added latency, a bandwidth cap, a connection reset after N response bytes,
a stall (accept and never answer), or an S3 error reply (503 SlowDown, 500 InternalError, 403
AccessDenied, 501 NotImplemented) with a probability. Rules match on the S3 operation class (PUT,
PART, GET, HEAD, LIST, POST, DELETE) and optionally on a path prefix and on a request header
being present, and can be changed while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

ERRORS = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    403: ("AccessDenied", "Access Denied"),
    501: ("NotImplemented", "A header you provided implies functionality that is not implemented"),
}


@dataclass
class Rule:
    ops: tuple[str, ...] = ("*",)
    path: str = ""
    """Only requests whose path starts with this (e.g. '/bucket/prefix')."""
    header: str = ""
    """Only requests that carry this header (lower case, e.g. 'if-none-match')."""
    status: int | None = None
    probability: float = 1.0
    latency: float = 0.0
    bandwidth: int | None = None
    """Bytes per second for response bodies."""
    reset_after: int | None = None
    stall: float | None = None
    """Accept the request and answer nothing for this many seconds, then drop the connection."""
    times: int | None = None
    """Apply at most this many times (None: forever)."""
    hits: int = 0

    def matches(self, op: str, path: str, headers: Mapping[str, str]) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.header and self.header not in headers:
            return False
        return ("*" in self.ops or op in self.ops) and path.startswith(self.path)


def operation(method: str, target: str) -> str:
    """The S3 operation class of a request."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    key = parts.path.strip("/").partition("/")[2]
    if method == "PUT":
        return "PART" if "partNumber" in query else "PUT"
    if method == "GET":
        return "LIST" if not key or "list-type" in query or "uploads" in query else "GET"
    return method


@dataclass
class FaultProxy:
    upstream_port: int
    rules: list[Rule] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    """Request body bytes forwarded upstream, by operation."""
    faults: Counter[str] = field(default_factory=Counter)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._lock = threading.Lock()
        self._stalled: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in self._stalled:
                writer.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def set_rules(self, *rules: Rule) -> None:
        with self._lock:
            self.rules = list(rules)

    def _pick(self, op: str, path: str, headers: Mapping[str, str]) -> Rule | None:
        with self._lock:
            self.seen[op] += 1
            for rule in self.rules:
                if rule.matches(op, path, headers) and random.random() < rule.probability:
                    rule.hits += 1
                    self.faults[op] += 1
                    return rule
        return None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await _read_body(reader, head)
                method, target = head.split(b" ", 2)[:2]
                op = operation(method.decode(), target.decode())
                path = urlsplit(target.decode()).path
                rule = self._pick(op, path, _headers(head))
                if rule is not None and rule.latency:
                    await asyncio.sleep(rule.latency)
                if rule is not None and rule.stall is not None:
                    self._stalled.append(writer)
                    await asyncio.sleep(rule.stall)
                    writer.transport.abort()
                    return
                if rule is not None and rule.status:
                    writer.write(_error(rule.status, method == b"HEAD"))
                    await writer.drain()
                    continue
                if upstream is None:
                    upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                up_reader, up_writer = upstream
                with self._lock:
                    self.sent[op] += len(body)
                up_writer.write(head + body)
                await up_writer.drain()
                if not await _relay_response(up_reader, writer, method == b"HEAD", rule):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if upstream is not None:
                with contextlib.suppress(Exception):
                    upstream[1].close()


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    headers = _headers(head)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return await _read_chunked(reader)
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        out += line
        size = int(line.split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        out += chunk
        if size == 0:
            return bytes(out)


async def _relay_response(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head_only: bool, rule: Rule | None
) -> bool:
    """Copy one response; False when the connection was cut on purpose."""
    head = await reader.readuntil(b"\r\n\r\n")
    while head.split(b" ", 2)[1].startswith(b"1"):
        # An interim "100 Continue": the proxy already sent the whole body, so drop it.
        head = await reader.readuntil(b"\r\n\r\n")
    headers = _headers(head)
    if head_only or head.split(b" ", 2)[1] in (b"204", b"304"):
        body = b""
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    data = head + body
    if rule is not None and rule.reset_after is not None:
        writer.write(data[: rule.reset_after])
        await writer.drain()
        writer.transport.abort()
        return False
    step = rule.bandwidth // 10 if rule is not None and rule.bandwidth else len(data) or 1
    for offset in range(0, len(data), max(1, step)):
        writer.write(data[offset : offset + step])
        await writer.drain()
        if rule is not None and rule.bandwidth:
            await asyncio.sleep(0.1)
    return True


def _error(status: int, head_only: bool) -> bytes:
    code, message = ERRORS.get(status, ("InternalError", "injected"))
    body = (
        b""
        if head_only
        else (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>"
        ).encode()
    )
    reasons = {503: "Slow Down", 500: "Internal Server Error", 403: "Forbidden"}
    reason = reasons.get(status, "Not Implemented" if status == 501 else "Err")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body
