"""The fake agent cannot drift from the real one: both are asked the same things over their
sockets, and every answer and event of each must decode strictly (no field missing, none
unknown, each of its type) as the protocol's record for it; the kinds the fake reports must be
kinds the real agent sends; and every method the protocol names must exist in the real agent."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dgagent.rpc import BUILTINS, AgentClient, EventType, Method, MethodNotFound, RpcError
from dgagent.rpc import records as r
from dgagent_tui.testing import FakeAgent
from tests import artifacts
from tests.agent.conftest import AgentProc, agent, agent_config  # noqa: F401 (agent: a fixture)

# What each answer decodes as (the methods the fake serves, with the params both can take).
ANSWERS: dict[Method, type[r.Record]] = {
    Method.STATUS: r.Status,
    Method.TRANSFERS: r.Transfers,
    Method.BROWSE_BUCKETS: r.Stores,
    Method.PAUSE: r.Paused,
    Method.RESUME: r.Paused,
}


def strict(cls: type[r.Record], answer: Any) -> r.Record:
    return cls.from_json(answer, strict=True)


def conversation(client: AgentClient, root: str, folder: str, file: str) -> dict[str, Any]:
    """Ask what the TUI asks; each answer decoded strictly (ProtocolError on any drift)."""
    got: dict[str, Any] = {m: strict(cls, client.call(m)) for m, cls in ANSWERS.items()}
    got["queue"] = [
        strict(r.QueuePage, client.call(Method.QUEUE, {"state": state}))
        for state in ("stored", "queued", "failed")
    ]
    got[Method.BROWSE_LIST] = strict(r.Listing, client.call(Method.BROWSE_LIST, {"url": folder}))
    got[Method.VERIFY] = strict(r.Verified, client.call(Method.VERIFY, {"url": file}))
    got[Method.RETRY] = strict(r.Retried, client.call(Method.RETRY))
    prune = {"url": folder, "keep_last": 1, "dryrun": True}
    got[Method.PRUNE] = strict(r.Pruned, client.call(Method.PRUNE, prune))
    got[Method.DELETE] = strict(r.Deleted, client.call(Method.DELETE, {"url": file}))
    got["hello"] = strict(r.Hello, client.call(Method.HELLO, {"protocol": 1}))
    return got


def events(client: AgentClient) -> list[dict[str, Any]]:
    """Every event the agent still holds (a replay from the first), each checked strictly."""
    client.subscribe(since=0)
    found = list(client.events(timeout=1.0))
    for event in found:
        if event.get("type") == EventType.EVENTS_DROPPED:
            continue
        strict(r.Event, event)
        r.event_data(EventType(event["type"]), event["data"], strict=True)
    return found


def kinds(got: dict[str, Any]) -> dict[str, set[str]]:
    """The kinds each sort of record reports (a listing has references, the queue never)."""
    return {
        "queue": {i.kind for page in got["queue"] for i in page.items if i.kind},
        "transfers": {t.kind for t in got[Method.TRANSFERS].items if t.kind},
        "browse": {f.kind for f in got[Method.BROWSE_LIST].files if f.kind},
    }


def wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_the_fake_and_the_real_agent_speak_the_same_records(
    agent: AgentProc,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    short_dir: Path,
) -> None:
    folder, store = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    store.mkdir()
    agent.write_config(agent_config([{"dir": str(folder), "url": f"file://{store}/rel/"}]))
    agent.start()
    for v in range(3):
        artifacts.write_zip(folder / f"app-1.{v}.zip", artifacts.source_tree(v))
        time.sleep(0.2)
    (folder / "notes.txt").write_text("not an archive\n" * 20)
    wait(lambda: agent.status()["done"] == 4, "four stored files")
    root = f"file://{store}"
    with AgentClient(agent.socket, timeout=30) as client:
        real = conversation(client, root, f"{root}/rel/", f"{root}/rel/app-1.2.zip")
    with AgentClient(agent.socket, timeout=30) as client:
        real_events = events(client)

    fake = FakeAgent(short_dir / "fake.sock")
    fake.seed_events()
    fake.start()
    try:
        with AgentClient(fake.socket_path, timeout=30) as client:
            faked = conversation(
                client, fake.state.root, f"{fake.state.root}/app/", "s3://releases/app/app-1.1.zip"
            )
        with AgentClient(fake.socket_path, timeout=30) as client:
            fake_events = events(client)
    finally:
        fake.stop()

    real_kinds, fake_kinds = kinds(real), kinds(faked)
    for where, found in fake_kinds.items():
        assert found <= real_kinds[where], f"the fake's {where} has kinds the agent never sends"
    assert "delta" in real_kinds["queue"] and "reference" not in real_kinds["queue"]
    real_types = {e["type"] for e in real_events}
    assert {EventType.FILE_STORED, EventType.SCAN_FINISHED} <= real_types
    assert {e["type"] for e in fake_events} >= {EventType.FILE_STORED, EventType.SCAN_FINISHED}


def test_the_real_agent_serves_every_method_the_protocol_names(agent: AgentProc) -> None:  # noqa: F811
    agent.write_config(agent_config([]))
    agent.start()
    with AgentClient(agent.socket, timeout=30) as client:
        for method in sorted(set(Method) - BUILTINS - {Method.SHUTDOWN}):
            try:
                client.call(method)
            except MethodNotFound:
                pytest.fail(f"the agent does not serve {method}")
            except RpcError:
                pass  # bad or missing params: the method exists
        client.call(Method.RESUME)
