"""The client layer alone: no textual, no boto3, the wire protocol and the reconnect policy."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from dgagent.rpc import AgentNotRunning, RpcError
from dgagent_tui.agent import AsyncAgentClient, Backoff
from dgagent_tui.agent.link import AgentEvent, LinkDown, Snapshot, follow
from dgagent_tui.testing import FakeAgent


def imported(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_the_client_layer_never_imports_textual() -> None:
    code = (
        "import sys, dgagent_tui.agent, dgagent_tui.agent.client, dgagent_tui.agent.link, "
        "dgagent_tui.agent.model, dgagent_tui.format; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))"
    )
    assert imported(code) == "[]"


def test_the_tui_never_imports_boto3() -> None:
    code = (
        "import sys, dgagent_tui.app, dgagent_tui.testing; "
        "print('boto3' in sys.modules, 'botocore' in sys.modules)"
    )
    assert imported(code) == "False False"


def test_backoff_doubles_to_ten_seconds_and_resets() -> None:
    backoff = Backoff(jitter=0)
    assert [backoff.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.next() == 0.5
    with pytest.raises(ValueError, match="first"):
        Backoff(0, 1)


def test_calls_errors_and_events_over_the_socket(fake_agent: FakeAgent) -> None:
    async def run() -> None:
        client = AsyncAgentClient(fake_agent.socket_path, timeout=5)
        hello = await client.connect()
        assert hello.pid == 4242
        # Concurrent calls are matched to their answers by id.
        status, listing = await asyncio.gather(
            client.call("status"), client.call("browse.list", {"url": "s3://releases/app/"})
        )
        assert status["done"] == 8 and len(listing["files"]) == 5
        with pytest.raises(RpcError) as info:
            await client.call("no.such.method")
        assert info.value.code == -32601
        await client.call("events.subscribe")
        fake_agent.publish("file.queued", watch="/w", path="a.zip", size=3)
        event = await asyncio.wait_for(client.events.get(), 5)
        assert event is not None and event["type"] == "file.queued"
        await client.close()

    asyncio.run(run())


def test_a_missing_agent_is_reported_as_not_running(short_dir: Path) -> None:
    async def run() -> None:
        with pytest.raises(AgentNotRunning, match="dg-agent start"):
            await AsyncAgentClient(short_dir / "none.sock").connect()

    asyncio.run(run())


def test_follow_reconnects_when_the_agent_restarts(fake_agent: FakeAgent) -> None:
    async def run() -> list[str]:
        seen: list[str] = []
        updates = follow(fake_agent.socket_path, backoff=Backoff(0.02, 0.05, jitter=0))
        async for update in updates:
            seen.append(type(update).__name__)
            if isinstance(update, Snapshot) and seen.count("Snapshot") == 1:
                await asyncio.to_thread(fake_agent.stop)
            elif isinstance(update, LinkDown) and update.attempt == 2:
                await asyncio.to_thread(fake_agent.start)
            elif isinstance(update, Snapshot):
                fake_agent.publish("file.queued", watch="/w", path="new.zip", size=1)
            elif isinstance(update, AgentEvent) and not update.replay:
                break
        await updates.aclose()
        return seen

    seen = asyncio.run(run())
    assert seen[:2] == ["LinkUp", "Snapshot"]
    assert "LinkDown" in seen and seen.count("LinkUp") == 2


def test_lost_events_lead_to_a_fresh_snapshot(short_dir: Path) -> None:
    agent = FakeAgent(short_dir / "agent.sock", history=5)
    for n in range(20):
        agent.publish("file.queued", watch="/w", path=f"f{n}", size=n)
    agent.start()

    async def run() -> list[str]:
        seen: list[str] = []
        updates = follow(agent.socket_path, backoff=Backoff(0.02, 0.05, jitter=0))
        async for update in updates:
            kind = type(update).__name__
            if isinstance(update, AgentEvent):
                kind = update.event["type"]
            seen.append(kind)
            if seen.count("Snapshot") == 2:
                break
        await updates.aclose()
        return seen

    try:
        seen = asyncio.run(run())
    finally:
        agent.stop()
    # Subscribing since 0 replays what the agent still has and says what it no longer has.
    assert seen[:2] == ["LinkUp", "Snapshot"]
    assert "events.dropped" in seen
    assert seen[seen.index("events.dropped") + 1] == "Snapshot"
