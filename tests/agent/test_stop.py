"""`dg-agent stop` against a busy agent: it answers, it exits 0 once the agent is gone, and the
agent's shutdown touches nothing it already closed (issue: 5 of 90 stops exited 1)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from dgagent.agent.index import Index, IndexClosedError
from dgagent.errors import DgError
from dgagent.rpc import AgentClient, AgentConnectionError, ErrorCode, RpcError
from tests.agent.conftest import AgentProc, agent_config

CYCLES = 20


def _hammer(socket: Path, stop: threading.Event, internal: list[str]) -> None:
    """Keep status-like calls in flight, on fresh and reused connections, until told to stop.

    Lost connections and refusals are expected while the agent stops; an internal error answer
    means a handler hit something the shutdown had already closed.
    """
    methods = ("status", "queue", "transfers", "stats")
    n = 0
    while not stop.is_set():
        try:
            with AgentClient(socket, timeout=10) as client:
                for _ in range(5):
                    client.call(methods[n % len(methods)])
                    n += 1
        except RpcError as exc:
            if exc.code == ErrorCode.INTERNAL_ERROR:
                internal.append(str(exc))
        except (AgentConnectionError, DgError, OSError):
            time.sleep(0.002)


def test_stop_answers_and_exits_zero_while_calls_are_in_flight(
    agent: AgentProc, tmp_path: Path
) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    agent.write_config(
        agent_config([{"dir": str(folder), "url": f"file://{root}/rel/"}], settle=0.05)
    )
    internal: list[str] = []
    for cycle in range(CYCLES):
        agent.start()
        assert agent.proc is not None
        for n in range(3):  # some stored while stopping, some left for the next start
            (folder / f"f{cycle}-{n}.bin").write_bytes(bytes([cycle, n]) * 20_000)
        stop = threading.Event()
        hammers = [
            threading.Thread(target=_hammer, args=(agent.socket, stop, internal)) for _ in range(3)
        ]
        for hammer in hammers:
            hammer.start()
        time.sleep(0.05 * (cycle % 4))  # stop at various points of the work
        try:
            done = agent.cli("stop", "--timeout", "20", check=False)
        finally:
            stop.set()
            for hammer in hammers:
                hammer.join(20)
        assert done.returncode == 0, f"cycle {cycle}: {done.stdout}{done.stderr}"
        assert "dg-agent stopped" in done.stdout
        assert agent.proc.wait(10) == 0, f"cycle {cycle}: the agent exited non-zero"
        agent.proc = None
    logs = "\n".join(p.read_text(errors="replace") for p in agent.logs)
    assert "Traceback" not in logs
    assert "closed database" not in logs
    assert not internal, internal[:3]
    # The files reach the store across the restarts: stopping lost no work.
    agent.start()
    status = agent.wait_idle()
    assert status["failed"] == 0
    assert status["done"] == CYCLES * 3


def test_a_closed_index_refuses_calls_with_a_clear_error(tmp_path: Path) -> None:
    """What outlives the shutdown (a handler past the grace, an upload past the drain timeout)
    gets a DgError it reports, not sqlite3's ProgrammingError traceback."""
    index = Index(tmp_path / "index.db")
    assert index.enqueue("w", "a.bin", "put")
    index.close()
    index.close()  # closing twice is harmless
    for call in (index.counts, lambda: index.claim(1, set()), lambda: index.get("w", "a.bin")):
        with pytest.raises(IndexClosedError, match="agent is stopping"):
            call()
