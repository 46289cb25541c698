"""The agent's socket server: JSON-RPC 2.0, one JSON object per ``\\n``-terminated line.

``start()`` prepares and binds the socket in the caller's thread, so every failure surfaces
there as a DgError; then one daemon thread runs an asyncio loop that serves all connections.
Handlers are plain functions run in a thread pool: a slow one (verify a file, list S3) never
stalls the loop or other requests. Each connection has a reader task and a writer task. Answers
are never dropped (a client that stops reading only stalls itself); events are: a client that
falls behind gets an ``events.dropped`` marker instead of holding up the agent.

Startup order (research report B, §3.5): the socket's directory must be ours, mode 0700 and not
a symlink; a stale socket is unlinked; the bind happens under umask 0o177 and is followed by a
chmod 0600; every peer's uid is checked on accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import socket
import stat
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgagent.agent.client import (
    APP_ERROR,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PROTOCOL,
    PROTOCOL_MISMATCH,
    UNAUTHORIZED,
    RpcError,
)
from dgagent.agent.events import Event, EventBus
from dgagent.errors import DgError

__all__ = ["PROTOCOL", "Handler", "RpcError", "RpcServer"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]

MAX_PENDING = 64  # requests per connection read but not yet answered; then stop reading it
BACKLOG = 256
_WRITE_BATCH = 1 << 16
# Longest socket path the kernel takes: sun_path is 108 bytes on Linux, 104 (with NUL) on macOS.
_SUN_PATH_MAX = 103 if sys.platform == "darwin" else 108
_BUILTINS = frozenset({"hello", "events.subscribe", "events.unsubscribe"})
# umask is process-wide: serialise our brief change and keep it around the bind() alone.
_UMASK_LOCK = threading.Lock()


class RpcServer:
    """Serve ``handlers`` and the built-in methods on a Unix socket."""

    def __init__(
        self,
        socket_path: Path,
        handlers: Mapping[str, Handler],
        bus: EventBus,
        *,
        info: Mapping[str, Any],
        max_line: int = 1 << 20,
        client_queue: int = 1000,
        workers: int = 8,
        allowed_uid: int | None = None,
    ) -> None:
        for name, value in (("max_line", max_line), ("client_queue", client_queue)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        clash = _BUILTINS & handlers.keys()
        if clash:
            raise ValueError(f"handlers may not replace built-in methods: {sorted(clash)}")
        self.socket_path = Path(socket_path)
        self.handlers = dict(handlers)
        self.bus = bus
        self.info = dict(info)
        self.max_line = max_line
        self.client_queue = client_queue
        self.allowed_uid = os.getuid() if allowed_uid is None else allowed_uid
        self._workers = workers
        self._lock = threading.Lock()
        self._state = "new"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stop_event: asyncio.Event | None = None
        self._bound: tuple[int, int] | None = None
        self._unsubscribe_bus: Callable[[], None] | None = None
        self._connections: set[_Connection] = set()
        self._client_tasks: set[asyncio.Task[Any]] = set()
        self._subscribers: set[_Connection] = set()
        self._delivered_seq = 0  # newest event handed to subscribers (loop thread only)
        self._drain_scheduled = False

    @property
    def clients(self) -> int:
        """Connections currently open (authorised ones)."""
        return len(self._connections)

    def start(self) -> None:
        """Bind and listen, then serve in a daemon thread; returns once clients can connect."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"RpcServer.start() called on a {self._state} server")
            sock, self._bound = _listen(self.socket_path)
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="dg-rpc")
            self._loop = asyncio.new_event_loop()
            self._delivered_seq = self.bus.last_seq
            # Subscribe before serving: a drain queued on the not-yet-running loop waits there.
            self._unsubscribe_bus = self.bus.subscribe(self._on_publish)
            ready = threading.Event()
            failure: list[Exception] = []
            self._thread = threading.Thread(
                target=self._run, args=(sock, ready, failure), name="dg-rpc-server", daemon=True
            )
            self._thread.start()
            ready.wait()
            if failure:
                self._unsubscribe_bus()
                self._thread.join()
                self._pool.shutdown(wait=False)
                sock.close()
                _remove_socket(self.socket_path, self._bound)
                self._state = "stopped"
                raise DgError(f"the socket server could not start: {failure[0]}") from failure[0]
            self._state = "running"
            log.info("listening on %s", self.socket_path)

    def stop(self) -> None:
        """Close the listener and every connection, join the thread, remove our socket file."""
        with self._lock:
            if self._state != "running":
                return
            self._state = "stopped"
            if self._unsubscribe_bus is not None:
                self._unsubscribe_bus()
            assert self._loop is not None and self._thread is not None and self._pool is not None
            with contextlib.suppress(RuntimeError):  # the loop already ended on its own
                self._loop.call_soon_threadsafe(self._request_stop)
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout=10)
                if self._thread.is_alive():
                    log.warning("the socket server thread did not stop within 10 s")
            # Handlers still running finish in their threads; their answers go nowhere.
            self._pool.shutdown(wait=False, cancel_futures=True)
            _remove_socket(self.socket_path, self._bound)
            log.info("stopped listening on %s", self.socket_path)

    # -- the loop thread ----------------------------------------------------------------------

    def _run(self, sock: socket.socket, ready: threading.Event, failure: list[Exception]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock, ready))
        except Exception as exc:
            if ready.is_set():
                log.exception("the socket server failed")
            else:
                failure.append(exc)
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        self._stop_event = asyncio.Event()
        server = await asyncio.start_unix_server(
            self._on_client, sock=sock, limit=self.max_line, backlog=BACKLOG
        )
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            tasks = list(self._client_tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    def _request_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._client_tasks.add(task)
        try:
            await self._serve_client(reader, writer)
        except asyncio.CancelledError:
            # Only stop() cancels us. End normally: Python 3.11's StreamReaderProtocol logs a
            # spurious error for a cancelled client task (fixed in 3.12).
            pass
        finally:
            self._client_tasks.discard(task)

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        uid = _peer_uid(writer.get_extra_info("socket"))
        if uid != self.allowed_uid:
            log.warning(
                "refused a connection from uid %s (only uid %s may connect)", uid, self.allowed_uid
            )
            writer.write(_error_line(None, RpcError(UNAUTHORIZED, "unauthorized")))
            # The peer may be gone or not reading: close regardless after a short grace.
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.drain(), 1.0)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        log.debug("client connected (%d open)", len(self._connections))
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)
            self._subscribers.discard(conn)
            log.debug("client %s disconnected (%d open)", conn.name, len(self._connections))

    # -- events ---------------------------------------------------------------------------------

    def _on_publish(self, event: Event) -> None:
        """Runs in the publisher's thread: schedule one drain for a burst, never block."""
        if self._drain_scheduled or self._loop is None:
            return
        self._drain_scheduled = True
        with contextlib.suppress(RuntimeError):  # loop closed: stopping, nobody listens
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        # Clear the flag before reading, so a publish racing with us schedules another drain.
        self._drain_scheduled = False
        events, lost = self.bus.since(self._delivered_seq)
        if not events:
            return
        self._delivered_seq = events[-1].seq
        if not self._subscribers:
            return
        lines = [(event.seq, _event_line(event)) for event in events]
        for conn in self._subscribers:
            if lost is not None:
                conn.offer_lost(lost, events[0].seq - 1)
            for seq, line in lines:
                conn.offer(seq, line)

    # -- built-in methods (run on the loop: they are quick) ---------------------------------------

    def _builtin(self, conn: _Connection, method: str, params: dict[str, Any]) -> Any:
        if method == "hello":
            protocol = params.get("protocol", PROTOCOL)
            if type(protocol) is not int or protocol != PROTOCOL:
                raise RpcError(
                    PROTOCOL_MISMATCH,
                    f"protocol mismatch: the client speaks protocol {protocol!r}, this agent "
                    f"speaks protocol {PROTOCOL}; upgrade the older of the two",
                    {"protocol": PROTOCOL},
                )
            client = params.get("client")
            if isinstance(client, str):
                conn.name = client[:100]
            return {**self.info, "protocol": PROTOCOL}
        if method == "events.subscribe":
            return self._subscribe(conn, params.get("since"))
        subscribed = conn in self._subscribers
        self._subscribers.discard(conn)
        return {"unsubscribed": subscribed}

    def _subscribe(self, conn: _Connection, since: Any) -> dict[str, Any]:
        last = self.bus.last_seq
        if since is None:
            conn.cursor = last
            replay: list[Event] = []
        elif type(since) is not int:
            raise RpcError(INVALID_PARAMS, f'"since" must be an event number, got {since!r}')
        else:
            replay, lost = self.bus.since(since)
            conn.cursor = min(max(since, 0), last)
            if lost is not None:
                conn.offer_lost(lost, replay[0].seq - 1)
            for event in replay:
                conn.offer(event.seq, _event_line(event))
        self._subscribers.add(conn)
        return {"last_seq": conn.cursor, "replayed": len(replay)}


class _Connection:
    """One client: a reader that dispatches lines and a writer that drains two queues.

    Answers wait in ``_answers`` (bounded by MAX_PENDING: past that the reader stops reading);
    events wait in ``_events`` (bounded by client_queue: past that they are dropped and an
    ``events.dropped`` marker follows once there is room). Answers are written first.
    """

    def __init__(
        self, server: RpcServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
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

    async def run(self) -> None:
        writer_task = asyncio.create_task(self._write_loop())
        try:
            await self._read_loop()
            # The peer may only have shut down its sending side: finish and send what it asked.
            if self._handlers:
                await asyncio.wait(set(self._handlers))
            self.server._subscribers.discard(self)
            self._closing = True
            self._wake.set()
            await writer_task
        finally:
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
                        _error_line(
                            None, RpcError(INVALID_REQUEST, f"message larger than {limit} bytes")
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
            request = _parse(line)
        except _BadRequestError as exc:
            self._send(exc.answer)
            return
        if request.method in _BUILTINS:
            try:
                result = self.server._builtin(self, request.method, request.params)
            except RpcError as exc:
                self._answer(request, _error_line(request.id, exc))
            else:
                self._answer(request, _result_line(request, result))
            return
        handler = self.server.handlers.get(request.method)
        if handler is None:
            error = RpcError(METHOD_NOT_FOUND, f"unknown method {request.method!r}")
            self._answer(request, _error_line(request.id, error))
            return
        task = asyncio.create_task(self._call(handler, request))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _call(self, handler: Handler, request: _Request) -> None:
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(self.server._pool, _run_handler, handler, request)
        self._answer(request, line)

    def _answer(self, request: _Request, line: bytes) -> None:
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
        params = {"type": "events.dropped", "from": first, "to": last}
        self._events.append(_encode({"jsonrpc": "2.0", "method": "event", "params": params}))
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


# -- messages -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    id: Any
    method: str
    params: dict[str, Any]
    notification: bool


def _encode(message: dict[str, Any]) -> bytes:
    # json.dumps escapes newlines inside strings, so a message always fits on one line.
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _result_line(request: _Request, result: Any) -> bytes:
    try:
        return _encode({"jsonrpc": "2.0", "id": request.id, "result": result})
    except (TypeError, ValueError, RecursionError) as exc:
        log.error("the result of %r is not JSON-serialisable: %s", request.method, exc)
        message = f"internal error in {request.method}: the result is not JSON-serialisable"
        return _error_line(request.id, RpcError(INTERNAL_ERROR, message))


def _error_line(request_id: Any, error: RpcError) -> bytes:
    try:
        return _encode({"jsonrpc": "2.0", "id": request_id, "error": error.to_json()})
    except (TypeError, ValueError):  # unserialisable data: the code and message still go out
        return _encode(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": error.code, "message": error.message},
            }
        )


def _event_line(event: Event) -> bytes:
    # default=str: an odd value in event data (a Path, a datetime) must not stop the stream.
    params = event.to_json()
    line = json.dumps(
        {"jsonrpc": "2.0", "method": "event", "params": params}, separators=(",", ":"), default=str
    )
    return line.encode() + b"\n"


class _BadRequestError(Exception):
    """A line that is not a valid request; ``answer`` is the error line that replies to it."""

    def __init__(self, request_id: Any, code: int, message: str) -> None:
        super().__init__(message)
        self.answer = _error_line(request_id, RpcError(code, message))


def _parse(line: bytes) -> _Request:
    """The request on ``line``; raises _BadRequestError for anything malformed."""
    try:
        message = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise _BadRequestError(None, PARSE_ERROR, "parse error: the message is not UTF-8") from None
    except RecursionError:
        raise _BadRequestError(None, PARSE_ERROR, "parse error: nested too deeply") from None
    except ValueError as exc:
        raise _BadRequestError(None, PARSE_ERROR, f"parse error: {exc}") from None
    if isinstance(message, list):
        raise _BadRequestError(None, INVALID_REQUEST, "batches are not supported")
    if not isinstance(message, dict):
        raise _BadRequestError(None, INVALID_REQUEST, "a request must be a JSON object")
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int | float | None):
        raise _BadRequestError(None, INVALID_REQUEST, '"id" must be a string, a number or null')
    if message.get("jsonrpc") != "2.0":
        raise _BadRequestError(request_id, INVALID_REQUEST, 'the "jsonrpc" member must be "2.0"')
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise _BadRequestError(
            request_id, INVALID_REQUEST, 'the "method" member must be a non-empty string'
        )
    params = message.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise _BadRequestError(
            request_id,
            INVALID_PARAMS,
            f'"params" must be an object of named parameters, not {type(params).__name__}',
        )
    return _Request(request_id, method, params, notification="id" not in message)


def _run_handler(handler: Handler, request: _Request) -> bytes:
    """Runs in the pool: call the handler and encode its answer (or its error)."""
    try:
        result = handler(request.params)
    except RpcError as exc:
        return _error_line(request.id, exc)
    except DgError as exc:
        return _error_line(request.id, RpcError(APP_ERROR, str(exc)))
    except Exception as exc:
        log.exception("handler for %r failed", request.method)
        message = f"internal error in {request.method}: {type(exc).__name__} (see the agent log)"
        return _error_line(request.id, RpcError(INTERNAL_ERROR, message))
    return _result_line(request, result)  # encoded here, in the pool, not on the loop


# -- the socket file -----------------------------------------------------------------------------


def _listen(path: Path) -> tuple[socket.socket, tuple[int, int]]:
    """Check the directory, replace a stale socket, bind 0600 and listen; DgError on failure."""
    size = len(os.fsencode(path))
    if size > _SUN_PATH_MAX:
        raise DgError(
            f"the socket path {path} is {size} bytes long, but Unix socket paths are limited to "
            f"{_SUN_PATH_MAX} bytes on this system (AF_UNIX sun_path); use a shorter runtime "
            f"directory (for example set XDG_RUNTIME_DIR)"
        )
    _prepare_dir(path.parent)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise DgError(f"{path} exists and is not a socket; remove it or use another path")
        os.unlink(path)  # stale: the caller holds the single-instance lock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = False
    try:
        with _UMASK_LOCK:
            old = os.umask(0o177)
            try:
                sock.bind(os.fspath(path))
            finally:
                os.umask(old)
        bound = True
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
        st = os.lstat(path)
    except (OSError, ValueError) as exc:
        sock.close()
        if bound:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DgError(f"cannot listen on {path}: {reason}") from exc
    return sock, (st.st_dev, st.st_ino)


def _prepare_dir(directory: Path) -> None:
    """The socket's directory must be a real directory, ours, reachable by nobody else."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        try:
            directory.mkdir(mode=0o700, parents=True)
            os.chmod(directory, 0o700)
        except OSError as exc:
            message = f"cannot create the socket directory {directory}: {exc.strerror}"
            raise DgError(message) from exc
        st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        raise DgError(f"the socket directory {directory} is a symbolic link; refusing to use it")
    if not stat.S_ISDIR(st.st_mode):
        raise DgError(f"the socket directory {directory} is not a directory")
    if st.st_uid != os.getuid():
        raise DgError(
            f"the socket directory {directory} belongs to uid {st.st_uid}, not to you "
            f"(uid {os.getuid()}); refusing to use it"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise DgError(
            f"the socket directory {directory} has mode {mode:04o}, so other users could reach "
            f"the socket; run: chmod 700 {directory}"
        )


def _remove_socket(path: Path, bound: tuple[int, int] | None) -> None:
    """Unlink the socket only if it is still the one we bound (never another agent's)."""
    try:
        st = os.lstat(path)
        if bound is not None and (st.st_dev, st.st_ino) == bound:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove the socket %s: %s", path, exc)


def _peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end, or None when the system will not say."""
    try:
        if sys.platform == "linux":
            # struct ucred: pid_t pid (signed), uid_t uid, gid_t gid (unsigned).
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
            _pid, uid, _gid = struct.unpack("iII", creds)
            return int(uid)
        if sys.platform == "darwin":
            return _getpeereid(sock.fileno())
    except OSError as exc:
        log.warning("could not read the peer's credentials: %s", exc)
    return None


def _getpeereid(fd: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    if libc.getpeereid(fd, ctypes.byref(uid), ctypes.byref(gid)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return int(uid.value)
