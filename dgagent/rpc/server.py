"""The agent's socket server: JSON-RPC 2.0, one JSON object per ``\\n``-terminated line.

``start()`` prepares and binds the socket in the caller's thread, so every failure surfaces
there as a DgError; then one daemon thread runs an asyncio loop that serves all connections.
Handlers are plain functions run in a thread pool: a slow one (verify a file, list S3) never
stalls the loop or other requests. The server owns what is shared between clients: the
listener, the pool, the relay of events from the bus to subscribers, and the built-in methods.

Its parts live next door: :mod:`dgagent.rpc.connection` serves one client (framing,
backpressure), :mod:`dgagent.rpc.jsonrpc` parses requests and encodes answers, and
:mod:`dgagent.rpc.unix_socket` makes the socket file safe to listen on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from dgagent.errors import DgError
from dgagent.rpc.connection import Connection
from dgagent.rpc.events import EventBus
from dgagent.rpc.jsonrpc import Handler, error_line, event_line
from dgagent.rpc.protocol import (
    BUILTINS,
    PROTOCOL,
    InvalidParams,
    Method,
    ProtocolMismatch,
    RpcError,
    Unauthorized,
)
from dgagent.rpc.records import Event
from dgagent.rpc.unix_socket import BACKLOG, listen, peer_uid, remove_socket

__all__ = ["PROTOCOL", "Handler", "RpcError", "RpcServer"]

log = logging.getLogger(__name__)


class RpcServer:
    """Serve ``handlers`` and the built-in methods on a Unix socket."""

    # Answered by the server itself, on the loop; handlers may not take these names.
    BUILTINS: ClassVar[frozenset[str]] = BUILTINS

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
        stop_grace: float = 5.0,
    ) -> None:
        for name, value in (("max_line", max_line), ("client_queue", client_queue)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        clash = self.BUILTINS & handlers.keys()
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
        self.stop_grace = stop_grace
        """How long stop() lets handlers in flight finish and their answers reach the clients."""
        self.stopping = False  # set on the loop thread once stop() began; read there only
        self._lock = threading.Lock()
        self._state = "new"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.pool: ThreadPoolExecutor | None = None  # connections run handlers here
        self._stop_event: asyncio.Event | None = None
        self._bound: tuple[int, int] | None = None
        self._unsubscribe_bus: Callable[[], None] | None = None
        self._connections: set[Connection] = set()
        self._client_tasks: set[asyncio.Task[Any]] = set()
        self.subscribers: set[Connection] = set()  # a connection leaves it when it closes
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
            sock, self._bound = listen(self.socket_path)
            self.pool = ThreadPoolExecutor(self._workers, thread_name_prefix="dg-rpc")
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
                self.pool.shutdown(wait=False)
                sock.close()
                remove_socket(self.socket_path, self._bound)
                self._state = "stopped"
                raise DgError(f"the socket server could not start: {failure[0]}") from failure[0]
            self._state = "running"
            log.info("listening on %s", self.socket_path)

    def stop(self) -> None:
        """Stop listening, answer what was asked, close every connection, remove the socket file.

        Requests already read are answered and the answers flushed (for up to ``stop_grace``
        seconds) before their connection closes: a client that asked ``shutdown`` gets its
        answer rather than a closed connection.
        """
        with self._lock:
            if self._state != "running":
                return
            self._state = "stopped"
            if self._unsubscribe_bus is not None:
                self._unsubscribe_bus()
            assert self._loop is not None and self._thread is not None and self.pool is not None
            with contextlib.suppress(RuntimeError):  # the loop already ended on its own
                self._loop.call_soon_threadsafe(self._request_stop)
            if threading.current_thread() is not self._thread:
                wait = self.stop_grace + 10
                self._thread.join(timeout=wait)
                if self._thread.is_alive():
                    log.warning("the socket server thread did not stop within %.0f s", wait)
            # Handlers still running past the grace finish in their threads; their answers go
            # nowhere (and what they ask of a closed index fails with IndexClosedError).
            self.pool.shutdown(wait=False, cancel_futures=True)
            remove_socket(self.socket_path, self._bound)
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
            self.stopping = True
            server.close()
            await self._close_clients()
            await server.wait_closed()

    async def _close_clients(self) -> None:
        """Let every connection finish: no more reading, answer what was read, flush, close.

        Past ``stop_grace`` the rest are cancelled. Loops because a connection accepted just
        before the listener closed registers its task a moment later.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_grace
        await asyncio.sleep(0)  # let connections accepted before close() start their task
        while self._client_tasks:
            for conn in list(self._connections):
                conn.finish_reading()
            tasks = set(self._client_tasks)
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.wait(tasks, timeout=remaining)
            else:
                log.warning("closing %d connections that did not finish in time", len(tasks))
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

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
        uid = peer_uid(writer.get_extra_info("socket"))
        if uid != self.allowed_uid:
            log.warning(
                "refused a connection from uid %s (only uid %s may connect)", uid, self.allowed_uid
            )
            writer.write(error_line(None, Unauthorized("unauthorized")))
            # The peer may be gone or not reading: close regardless after a short grace.
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.drain(), 1.0)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        conn = Connection(self, reader, writer)
        self._connections.add(conn)
        log.debug("client connected (%d open)", len(self._connections))
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)
            self.subscribers.discard(conn)
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
        if not self.subscribers:
            return
        lines = [(event.seq, event_line(event)) for event in events]
        for conn in self.subscribers:
            if lost is not None:
                conn.offer_lost(lost, events[0].seq - 1)
            for seq, line in lines:
                conn.offer(seq, line)

    # -- built-in methods (run on the loop: they are quick) ---------------------------------------

    def call_builtin(self, conn: Connection, method: str, params: dict[str, Any]) -> Any:
        """Answer one of BUILTINS for ``conn``; raises RpcError for bad params."""
        if method == Method.HELLO:
            protocol = params.get("protocol", PROTOCOL)
            if type(protocol) is not int or protocol != PROTOCOL:
                raise ProtocolMismatch(
                    f"protocol mismatch: the client speaks protocol {protocol!r}, this agent "
                    f"speaks protocol {PROTOCOL}; upgrade the older of the two",
                    {"protocol": PROTOCOL},
                )
            client = params.get("client")
            if isinstance(client, str):
                conn.name = client[:100]
            return {**self.info, "protocol": PROTOCOL}
        if method == Method.SUBSCRIBE:
            return self._subscribe(conn, params.get("since"))
        subscribed = conn in self.subscribers
        self.subscribers.discard(conn)
        return {"unsubscribed": subscribed}

    def _subscribe(self, conn: Connection, since: Any) -> dict[str, Any]:
        last = self.bus.last_seq
        if since is None:
            conn.cursor = last
            replay: list[Event] = []
        elif type(since) is not int:
            raise InvalidParams(f'"since" must be an event number, got {since!r}')
        else:
            replay, lost = self.bus.since(since)
            conn.cursor = min(max(since, 0), last)
            if lost is not None:
                conn.offer_lost(lost, replay[0].seq - 1)
            for event in replay:
                conn.offer(event.seq, event_line(event))
        self.subscribers.add(conn)
        return {"last_seq": conn.cursor, "replayed": len(replay)}
