"""Fixtures for the TUI: a fake agent on a real Unix socket, and apps with a frozen clock."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from textual.worker import WorkerCancelled, WorkerError, WorkerFailed

from dgagent_tui.agent.link import Backoff
from dgagent_tui.app import DgApp
from dgagent_tui.testing import FROZEN_EPOCH, FakeAgent, FakeState, demo_state


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop (Pilot needs one; no plugin required)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are short (~104 bytes): keep sockets directly under /tmp.
    path = Path(tempfile.mkdtemp(prefix="dgt", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_agent(short_dir: Path) -> Iterator[FakeAgent]:
    with serving(short_dir, demo_state()) as agent:
        yield agent


@contextlib.contextmanager
def serving(short_dir: Path, state: FakeState) -> Iterator[FakeAgent]:
    """A fake agent with ``state`` (and the usual history) for the length of a ``with``."""
    agent = FakeAgent(short_dir / "agent.sock", state)
    agent.seed_events()
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def make_app(socket_path: Path, **kwargs: Any) -> DgApp:
    """An app with stable output: a frozen clock, a fixed label, retries without jitter."""
    kwargs.setdefault("label", "agent.sock")
    kwargs.setdefault("clock", lambda: FROZEN_EPOCH)
    kwargs.setdefault("backoff", Backoff(0.05, 0.2, jitter=0))
    kwargs.setdefault("keymap_file", Path("tui.toml"))  # absent: the defaults, and a stable name
    return DgApp(socket_path, **kwargs)


async def wait_for(
    pilot: Pilot[Any], check: Callable[[], bool], what: str, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def settle(pilot: Pilot[Any]) -> None:
    """Let pending messages run and action workers finish (or fail: the app shows that in its
    error modal, which the test then checks; waiting must not raise it here, or a worker slow
    enough to be still running at the first pause fails the test)."""
    await pilot.pause(0.1)
    ops = [w for w in pilot.app.workers if w.group != "link"]  # the link worker never ends
    for worker in ops:
        with contextlib.suppress(WorkerFailed, WorkerCancelled, WorkerError):
            await worker.wait()
    await pilot.pause(0.1)


def screen_text(app: App[Any]) -> list[str]:
    """The screen as plain text, one string a line (what a user reads, glyphs included)."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True, record=True
    )
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text(styles=False).splitlines()
