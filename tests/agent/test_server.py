"""The socket server and client over real Unix sockets: framing, errors, safety, events, load.

Socket directories come from ``tempfile.mkdtemp(dir="/tmp")``: pytest's tmp_path can exceed the
~108-byte AF_UNIX path limit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dgagent.errors import DgError, NotFoundError
from dgagent.rpc import (
    PROTOCOL,
    AgentClient,
    AgentConnectionError,
    AgentNotRunning,
    RpcError,
)
from dgagent.rpc.events import EventBus
from dgagent.rpc.protocol import EventType
from dgagent.rpc.records import FileSeen, Nothing
from dgagent.rpc.server import RpcServer

TIMEOUT = 10.0


@dataclass
class Harness:
    server: RpcServer
    bus: EventBus
    path: Path
    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def client(self, timeout: float = TIMEOUT) -> AgentClient:
        client = AgentClient(self.path, timeout=timeout)
        client.connect()
        return client


def make_handlers(
    bus: EventBus, started: threading.Event, release: threading.Event
) -> dict[str, Callable[[dict[str, Any]], Any]]:
    def echo(params: dict[str, Any]) -> Any:
        return params

    def slow(params: dict[str, Any]) -> Any:
        started.set()
        if not release.wait(TIMEOUT):
            raise DgError("the test never released the slow handler")
        return "done"

    def fails_dg(params: dict[str, Any]) -> Any:
        raise NotFoundError("no watch named 'photos'; list them with: dg-agent watch list")

    def fails_bug(params: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    def publish(params: dict[str, Any]) -> Any:
        for i in range(int(params.get("count", 1))):
            bus.publish(EventType.FILE_QUEUED, FileSeen("/w", "published", i))
        return bus.last_seq

    def unserialisable(params: dict[str, Any]) -> Any:
        return {"when": object()}

    return {
        "echo": echo,
        "slow": slow,
        "fails_dg": fails_dg,
        "fails_bug": fails_bug,
        "publish": publish,
        "unserialisable": unserialisable,
    }


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="dg", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def make(sock_dir: Path) -> Iterator[Callable[..., Harness]]:
    """Start servers on demand (each on its own socket); stop them all at the end."""
    harnesses: list[Harness] = []

    def start(*, capacity: int = 1000, name: str | None = None, **options: Any) -> Harness:
        bus = EventBus(capacity)
        started, release = threading.Event(), threading.Event()
        path = sock_dir / (name or f"s{len(harnesses)}.sock")
        server = RpcServer(
            path,
            make_handlers(bus, started, release),
            bus,
            info={"agent": "test", "pid": os.getpid()},
            **options,
        )
        harness = Harness(server, bus, path, started, release)
        server.start()
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        harness.release.set()
        harness.server.stop()


@pytest.fixture
def h(make: Callable[..., Harness]) -> Harness:
    return make()


class Raw:
    """A bare socket speaking lines, for what AgentClient would never send."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(str(path))
        self.buffer = b""

    def send(self, data: bytes | dict[str, Any]) -> None:
        if isinstance(data, dict):
            data = json.dumps(data).encode() + b"\n"
        self.sock.sendall(data)

    def recv(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        assert isinstance(message, dict)
        return message

    def at_eof(self) -> bool:
        return self.buffer == b"" and self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(h: Harness) -> Iterator[Raw]:
    conn = Raw(h.path)
    yield conn
    conn.close()


def request(id_: Any, method: str, params: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


# -- calls and errors -----------------------------------------------------------------------------


def test_hello_answers_info_and_checks_the_protocol(h: Harness) -> None:
    with h.client() as client:
        result = client.call("hello", {"protocol": PROTOCOL, "client": "pytest"})
        assert result == {"agent": "test", "pid": os.getpid(), "protocol": 1}
        with pytest.raises(RpcError) as caught:
            client.call("hello", {"protocol": 2})
        assert caught.value.code == -32002
        assert "protocol 2" in caught.value.message
        assert "protocol 1" in caught.value.message


def test_echo_round_trip_without_hello(h: Harness) -> None:
    params = {"text": "héllo\nworld", "n": [1, 2.5, None, True], "nested": {"a": {}}}
    with h.client() as client:
        assert client.call("echo", params) == params
        assert client.call("echo") == {}


def test_unknown_method(h: Harness) -> None:
    with h.client() as client:
        with pytest.raises(RpcError) as caught:
            client.call("no.such.method")
        assert caught.value.code == -32601
        assert "no.such.method" in caught.value.message
        assert client.call("echo", {"ok": 1}) == {"ok": 1}


def test_malformed_json_and_bad_utf8_keep_the_connection(raw: Raw) -> None:
    raw.send(b'{"jsonrpc": "2.0", "id": 1, "method":\n')
    reply = raw.recv()
    assert reply["id"] is None
    assert reply["error"]["code"] == -32700
    raw.send(b'{"jsonrpc":"2.0","id":2,"method":"echo","params":{"s":"\xff\xfe"}}\n')
    reply = raw.recv()
    assert reply["error"]["code"] == -32700
    assert "UTF-8" in reply["error"]["message"]
    raw.send(b"[" * 100_000 + b"\n")
    assert raw.recv()["error"]["code"] == -32700
    raw.send(request(3, "echo", {"still": "here"}))
    assert raw.recv() == {"jsonrpc": "2.0", "id": 3, "result": {"still": "here"}}


def test_invalid_requests(raw: Raw) -> None:
    cases: list[tuple[bytes | dict[str, Any], Any, int, str]] = [
        (b"42\n", None, -32600, "JSON object"),
        (b'"echo"\n', None, -32600, "JSON object"),
        (b'[{"jsonrpc":"2.0","id":1,"method":"echo"}]\n', None, -32600, "batches"),
        ({"jsonrpc": "2.0", "id": 4}, 4, -32600, "method"),
        ({"jsonrpc": "2.0", "id": 5, "method": 7}, 5, -32600, "method"),
        ({"jsonrpc": "1.0", "id": 6, "method": "echo"}, 6, -32600, "jsonrpc"),
        ({"id": 7, "method": "echo"}, 7, -32600, "jsonrpc"),
        ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "echo"}, None, -32600, "id"),
        (request(8, "echo", [1, 2]), 8, -32602, "list"),
        (request(9, "echo", "text"), 9, -32602, "str"),
    ]
    for data, expected_id, code, words in cases:
        raw.send(data)
        reply = raw.recv()
        assert reply["jsonrpc"] == "2.0"
        assert reply["id"] == expected_id, data
        assert reply["error"]["code"] == code, data
        assert words in reply["error"]["message"], data
    raw.send(request("last", "echo", {"a": 1}))
    assert raw.recv()["result"] == {"a": 1}


def test_notifications_get_no_reply_but_run(h: Harness, raw: Raw) -> None:
    raw.send({"jsonrpc": "2.0", "method": "publish", "params": {"count": 3}})
    raw.send({"jsonrpc": "2.0", "method": "no.such.method"})
    raw.send({"jsonrpc": "2.0", "method": "fails_bug"})
    raw.send(b"\n   \n")  # blank lines are ignored, not errors
    raw.send(request(1, "echo", {"x": 1}))
    assert raw.recv() == {"jsonrpc": "2.0", "id": 1, "result": {"x": 1}}
    deadline = time.monotonic() + TIMEOUT
    while h.bus.last_seq < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert h.bus.last_seq == 3


def test_oversized_line_is_refused_and_the_connection_survives(h: Harness) -> None:
    with h.client() as client:
        with pytest.raises(RpcError) as caught:
            client.call("echo", {"blob": "x" * (10 << 20)})
        assert caught.value.code == -32600
        assert caught.value.message == f"message larger than {1 << 20} bytes"
        assert client.call("echo", {"after": True}) == {"after": True}


def test_max_line_boundary(make: Callable[..., Harness]) -> None:
    h = make(max_line=64)
    conn = Raw(h.path)
    try:
        body = json.dumps(request(1, "echo")).encode()
        conn.send(body.ljust(64) + b"\n")  # trailing spaces are valid JSON whitespace
        assert conn.recv()["result"] == {}
        conn.send(body.ljust(65) + b"\n")
        assert conn.recv()["error"] == {"code": -32600, "message": "message larger than 64 bytes"}
        conn.send(b"y" * 1000 + b"\n" + body.replace(b"1", b"2") + b"\n")
        assert conn.recv()["error"]["code"] == -32600
        assert conn.recv() == {"jsonrpc": "2.0", "id": 2, "result": {}}
    finally:
        conn.close()


def test_handler_dgerror_becomes_32000_with_its_message(h: Harness) -> None:
    with h.client() as client:
        with pytest.raises(RpcError) as caught:
            client.call("fails_dg")
        assert caught.value.code == -32000
        assert caught.value.message == (
            "no watch named 'photos'; list them with: dg-agent watch list"
        )


def test_unexpected_exception_becomes_32603_and_is_logged(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="dgagent.rpc.server"), h.client() as client:
        with pytest.raises(RpcError) as caught:
            client.call("fails_bug")
        assert caught.value.code == -32603
        assert "RuntimeError" in caught.value.message
        assert "boom" not in caught.value.message  # details go to the log, not the wire
        with pytest.raises(RpcError) as caught:
            client.call("unserialisable")
        assert caught.value.code == -32603
        assert client.call("echo", {"alive": 1}) == {"alive": 1}
    logged = [r for r in caplog.records if r.exc_info and "fails_bug" in r.getMessage()]
    assert logged, "the traceback should be logged"


def test_partial_last_line_is_answered_after_half_close(raw: Raw) -> None:
    raw.send(json.dumps(request(1, "echo", {"last": 1})).encode())  # no newline
    raw.sock.shutdown(socket.SHUT_WR)
    assert raw.recv()["result"] == {"last": 1}
    assert raw.at_eof()


# -- concurrency ----------------------------------------------------------------------------------


def test_slow_handler_does_not_block_another_connection(h: Harness) -> None:
    results: dict[str, Any] = {}
    with h.client() as slow_client, h.client() as fast_client:
        worker = threading.Thread(target=lambda: results.update(slow=slow_client.call("slow")))
        worker.start()
        assert h.started.wait(TIMEOUT)
        assert fast_client.call("echo", {"fast": 1}) == {"fast": 1}
        assert worker.is_alive()
        h.release.set()
        worker.join(TIMEOUT)
    assert results == {"slow": "done"}


def test_answers_on_one_connection_may_come_out_of_order(h: Harness, raw: Raw) -> None:
    raw.send(request(1, "slow"))
    assert h.started.wait(TIMEOUT)
    raw.send(request(2, "echo", {"second": True}))
    assert raw.recv() == {"jsonrpc": "2.0", "id": 2, "result": {"second": True}}
    h.release.set()
    assert raw.recv() == {"jsonrpc": "2.0", "id": 1, "result": "done"}


def test_pipelined_requests_all_get_answers(raw: Raw) -> None:
    """More requests than the per-connection limit, sent without reading: backpressure, no loss."""
    count = 5000
    lines = b"\n".join(json.dumps(request(i, "echo", {"i": i})).encode() for i in range(count))
    lines += b"\n"
    sender = threading.Thread(target=raw.send, args=(lines,))
    sender.start()
    answers: dict[int, int] = {}
    for _ in range(count):
        reply = raw.recv()
        answers[reply["id"]] = reply["result"]["i"]
    sender.join(TIMEOUT)
    assert answers == {i: i for i in range(count)}


def test_200_concurrent_clients(h: Harness) -> None:
    clients = [h.client() for _ in range(200)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while h.server.clients < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert h.server.clients == 200

        def work(n: int) -> list[Any]:
            return [clients[n].call("echo", {"n": n, "k": k}) for k in range(3)]

        with ThreadPoolExecutor(max_workers=200) as pool:
            answers = list(pool.map(work, range(200)))
        assert answers == [[{"n": n, "k": k} for k in range(3)] for n in range(200)]
    finally:
        for client in clients:
            client.close()


# -- events ---------------------------------------------------------------------------------------


def test_subscriber_gets_events_in_order_and_can_replay(h: Harness) -> None:
    with h.client() as client:
        assert client.subscribe() == {"last_seq": 0, "replayed": 0}
        for i in range(5):
            h.bus.publish(EventType.FILE_QUEUED, FileSeen("/w", f"a/{i}.tar", i))
        got = [event for _, event in zip(range(5), client.events(timeout=TIMEOUT), strict=False)]
    assert [e["seq"] for e in got] == [1, 2, 3, 4, 5]
    assert [e["data"]["path"] for e in got] == [f"a/{i}.tar" for i in range(5)]
    assert all(e["type"] == "file.queued" and e["time"].endswith("Z") for e in got)

    with h.client() as late:
        assert late.subscribe(since=2) == {"last_seq": 5, "replayed": 3}
        # events published by a handler (another thread) arrive too, after the replay
        assert late.call("publish", {"count": 2}) == 7
        replay = [event for _, event in zip(range(5), late.events(timeout=TIMEOUT), strict=False)]
        assert [e["seq"] for e in replay] == [3, 4, 5, 6, 7]
        assert late.call("events.unsubscribe") == {"unsubscribed": True}
        h.bus.publish(EventType.AGENT_STOPPING, Nothing())
        assert list(late.events(timeout=0.3)) == []


def test_replay_reports_events_no_longer_buffered(make: Callable[..., Harness]) -> None:
    h = make(capacity=10)
    for i in range(15):
        h.bus.publish(EventType.FILE_QUEUED, FileSeen("/w", "tick", i))
    with h.client() as client:
        assert client.subscribe(since=0) == {"last_seq": 15, "replayed": 10}
        got = [event for _, event in zip(range(11), client.events(timeout=TIMEOUT), strict=False)]
    assert got[0] == {"type": "events.dropped", "from": 1, "to": 5}
    assert [e["seq"] for e in got[1:]] == list(range(6, 16))


def test_a_client_that_never_reads_does_not_block_the_agent(make: Callable[..., Harness]) -> None:
    h = make(client_queue=16)
    stalled = Raw(h.path)
    try:
        stalled.send(request(1, "events.subscribe"))
        first = stalled.recv()["result"]["last_seq"] + 1
        began = time.monotonic()
        for i in range(50_000):
            h.bus.publish(EventType.FILE_QUEUED, FileSeen("/w", "x" * 200, i))
        elapsed = time.monotonic() - began
        assert elapsed < 15, f"publishing took {elapsed:.1f} s: a slow client blocks the agent"
        with h.client() as other:
            assert other.call("echo", {"ok": True}) == {"ok": True}

        # Now read: every number is either delivered once, in order, or inside a marker.
        expected, markers = first, 0
        while expected <= h.bus.last_seq:
            params = stalled.recv()["params"]
            if params["type"] == "events.dropped":
                assert params["from"] == expected
                assert params["to"] >= params["from"]
                expected = params["to"] + 1
                markers += 1
            else:
                assert params["seq"] == expected
                expected += 1
        assert markers >= 1
        assert expected == 50_001
        stalled.send(request(2, "echo", {"caught": "up"}))
        assert stalled.recv()["result"] == {"caught": "up"}
    finally:
        stalled.close()


# -- socket safety and lifecycle ------------------------------------------------------------------


def test_socket_is_0600_in_a_0700_directory(make: Callable[..., Harness], sock_dir: Path) -> None:
    h = make(name="sub/agent.sock")  # the missing directory is created 0700
    assert stat.S_ISSOCK(os.lstat(h.path).st_mode)
    assert stat.S_IMODE(os.lstat(h.path).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(sock_dir / "sub").st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(sock_dir).st_mode) == 0o700


def test_a_peer_with_another_uid_is_refused(make: Callable[..., Harness]) -> None:
    h = make(allowed_uid=os.getuid() + 1)
    conn = Raw(h.path)
    try:
        reply = conn.recv()
        assert reply == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32001, "message": "unauthorized"},
        }
        assert conn.at_eof()
    finally:
        conn.close()
    with h.client() as client, pytest.raises(RpcError) as caught:
        client.call("hello")
    assert caught.value.code == -32001
    assert h.server.clients == 0


def test_stop_closes_clients_and_removes_only_its_socket(h: Harness, sock_dir: Path) -> None:
    lock = sock_dir / "agent.lock"
    lock.write_text("4242\n")
    client = h.client()
    client.subscribe()
    h.server.stop()
    assert list(client.events(timeout=TIMEOUT)) == []  # ends at EOF, not at the timeout
    assert not client.connected
    assert not h.path.exists()
    assert lock.read_text() == "4242\n"
    assert sock_dir.is_dir()
    h.server.stop()  # idempotent
    with pytest.raises(AgentNotRunning, match="dg-agent start"):
        AgentClient(h.path).connect()


def test_stop_answers_the_calls_in_flight_before_closing(h: Harness) -> None:
    """A ``shutdown`` call is in flight when the agent stops its server: it must get its answer."""
    answers: list[Any] = []
    with h.client() as client:
        caller = threading.Thread(target=lambda: answers.append(client.call("slow")))
        caller.start()
        assert h.started.wait(TIMEOUT)
        stopper = threading.Thread(target=h.server.stop)
        stopper.start()
        deadline = time.monotonic() + TIMEOUT
        while True:  # stop() has begun once the listener refuses new clients
            try:
                AgentClient(h.path, timeout=TIMEOUT).connect()
            except AgentNotRunning:
                break
            assert time.monotonic() < deadline, "the server kept accepting clients"
            time.sleep(0.01)
        assert stopper.is_alive()  # waiting for the handler, not gone without answering
        h.release.set()
        caller.join(TIMEOUT)
        stopper.join(TIMEOUT)
        assert list(client.events(timeout=TIMEOUT)) == []  # then the connection closes
    assert answers == ["done"]
    assert not h.path.exists()


def test_stop_gives_up_on_a_handler_past_its_grace(make: Callable[..., Harness]) -> None:
    h = make(stop_grace=0.3)
    lost: list[Exception] = []

    def call() -> None:
        try:
            client.call("slow")
        except AgentConnectionError as exc:
            lost.append(exc)

    with h.client() as client:
        caller = threading.Thread(target=call)
        caller.start()
        assert h.started.wait(TIMEOUT)
        began = time.monotonic()
        h.server.stop()
        assert time.monotonic() - began < 5
        caller.join(TIMEOUT)
    assert len(lost) == 1
    assert "closed the connection before answering 'slow'" in str(lost[0])


def test_stop_leaves_a_socket_that_is_not_its_own(h: Harness) -> None:
    os.unlink(h.path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        other.bind(str(h.path))  # another agent took the path over
        h.server.stop()
        assert stat.S_ISSOCK(os.lstat(h.path).st_mode)
    finally:
        other.close()


def test_stale_socket_is_replaced(make: Callable[..., Harness], sock_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_dir / "agent.sock"))
    stale.close()  # the file stays: what a killed agent leaves behind
    with pytest.raises(AgentNotRunning, match="nothing listens"):
        AgentClient(sock_dir / "agent.sock").connect()
    h = make(name="agent.sock")
    with h.client() as client:
        assert client.call("echo", {"fresh": 1}) == {"fresh": 1}


def test_refuses_unsafe_paths(sock_dir: Path) -> None:
    bus = EventBus()

    def attempt(path: Path) -> DgError:
        server = RpcServer(path, {}, bus, info={})
        with pytest.raises(DgError) as caught:
            server.start()
        server.stop()
        return caught.value

    regular = sock_dir / "agent.sock"
    regular.write_text("not a socket")
    assert "not a socket" in str(attempt(regular))
    assert regular.read_text() == "not a socket"

    real = sock_dir / "real"
    real.mkdir(mode=0o700)
    (sock_dir / "link").symlink_to(real)
    assert "symbolic link" in str(attempt(sock_dir / "link" / "agent.sock"))

    shared = sock_dir / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    error = attempt(shared / "agent.sock")
    assert "0755" in str(error)
    assert "chmod 700" in str(error)

    prefix = len(os.fsencode(sock_dir)) + 1
    too_long = sock_dir / ("x" * (109 - prefix))
    assert len(os.fsencode(too_long)) == 109
    error = attempt(too_long)
    assert "109 bytes" in str(error)
    assert "108" in str(error)
    assert not too_long.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory to another uid needs root")
def test_refuses_a_directory_owned_by_someone_else(sock_dir: Path) -> None:
    foreign = sock_dir / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, os.getuid() + 1, -1)
    server = RpcServer(foreign / "agent.sock", {}, EventBus(), info={})
    with pytest.raises(DgError, match="belongs to uid"):
        server.start()


def test_client_errors_are_clear(sock_dir: Path) -> None:
    client = AgentClient(sock_dir / "missing.sock")
    with pytest.raises(AgentNotRunning) as caught:
        client.connect()
    assert str(caught.value) == (
        f"the agent is not running (no socket at {sock_dir / 'missing.sock'}); "
        "start it with: dg-agent start"
    )
    assert isinstance(caught.value, ConnectionError)
    with pytest.raises(AgentConnectionError, match="connect"):
        client.call("hello")


def test_builtin_names_cannot_be_replaced(sock_dir: Path) -> None:
    with pytest.raises(ValueError, match="hello"):
        RpcServer(sock_dir / "a.sock", {"hello": lambda p: p}, EventBus(), info={})
