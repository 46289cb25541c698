"""The reconnecting link: connect, load a snapshot, follow events, and on loss start over.

``follow()`` is an async iterator of what happened on the link (LinkUp, Snapshot, Event,
StatusTick, LinkDown). It never gives up: while the agent is away it yields LinkDown with the
delay before the next try, growing from 0.5 s to 10 s, and resets the delay after a success.
Keeping this policy here, free of widgets, lets it be tested against a real socket alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgagent.rpc import AgentConnectionError, AgentTimeoutError, EventType, Method, RpcError
from dgagent.rpc.records import Hello, QueueItem, QueuePage, Status, Transfer, Transfers
from dgagent_tui.agent.client import AsyncAgentClient

DONE_ROWS_LOADED = 1000  # stored files fetched on (re)connect; older ones are history
PENDING_ROWS_LOADED = 20_000


class Backoff:
    """Delays of 0.5 s doubling up to 10 s, with ±10 % jitter so many clients do not align."""

    def __init__(self, first: float = 0.5, most: float = 10.0, *, jitter: float = 0.1) -> None:
        if not 0 < first <= most:
            raise ValueError(f"need 0 < first <= most, got first={first!r} most={most!r}")
        self.first, self.most, self.jitter = first, most, jitter
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.first * 2**self.attempt, self.most)
        self.attempt += 1
        return float(delay * (1 + random.uniform(-self.jitter, self.jitter)))

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True)
class LinkUp:
    client: AsyncAgentClient
    hello: Hello


@dataclass(frozen=True)
class Snapshot:
    """Everything needed to (re)draw from scratch: after connecting and after lost events."""

    status: Status
    items: list[QueueItem]
    transfers: list[Transfer]


@dataclass(frozen=True)
class AgentEvent:
    event: dict[str, Any]
    replay: bool = False  # from before we connected: history for the log, already in snapshots


@dataclass(frozen=True)
class StatusTick:
    status: Status


@dataclass(frozen=True)
class LinkDown:
    reason: str
    retry_in: float
    attempt: int
    was_up: bool = field(default=False)


Update = LinkUp | Snapshot | AgentEvent | StatusTick | LinkDown


async def status(client: AsyncAgentClient) -> Status:
    return Status.from_json(await client.call(Method.STATUS))


async def snapshot(client: AsyncAgentClient) -> Snapshot:
    first = await status(client)
    items: list[QueueItem] = []
    for state, limit in (
        ("uploading", PENDING_ROWS_LOADED),
        ("queued", PENDING_ROWS_LOADED),
        ("failed", PENDING_ROWS_LOADED),
        ("stored", DONE_ROWS_LOADED),
    ):
        page = await client.call(Method.QUEUE, {"state": state, "limit": limit})
        items += QueuePage.from_json(page).items
    transfers = await client.call(Method.TRANSFERS, {"limit": 120})
    return Snapshot(first, items, Transfers.from_json(transfers).items)


async def follow(
    socket_path: Path,
    *,
    backoff: Backoff | None = None,
    status_every: float = 2.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncGenerator[Update, None]:
    """Yield link updates forever (the consumer stops by cancelling)."""
    backoff = backoff or Backoff()
    was_up = False
    seen: tuple[Any, int] = (None, 0)  # (agent pid, newest event number we have)
    while True:
        client = AsyncAgentClient(socket_path)
        try:
            hello = await client.connect()
            # Replay the agent's recent history for the log; only what we have not seen yet
            # from this same agent process.
            since = seen[1] if hello.pid == seen[0] else 0
            subscribed = await client.call(Method.SUBSCRIBE, {"since": since})
            history_until = int(subscribed.get("last_seq") or 0)
            seen = (hello.pid, history_until)
            backoff.reset()
            was_up = True
            yield LinkUp(client, hello)
            yield await snapshot(client)
            while True:
                try:
                    event = await asyncio.wait_for(client.events.get(), status_every)
                except TimeoutError:
                    yield StatusTick(await status(client))
                    continue
                if event is None:
                    raise AgentConnectionError("the agent closed the connection")
                seq = int(event.get("seq") or event.get("to") or 0)
                seen = (seen[0], max(seen[1], seq))
                if event.get("type") == EventType.EVENTS_DROPPED:
                    yield AgentEvent(event, replay=seq <= history_until)
                    yield await snapshot(client)  # we missed some: re-read the whole state
                    continue
                yield AgentEvent(event, replay=seq <= history_until)
        except (AgentConnectionError, AgentTimeoutError, RpcError, OSError) as exc:
            reason = str(exc)
        except (KeyError, TypeError, ValueError) as exc:
            # An answer of the wrong shape: an agent of another version. Retrying is right; it
            # may be upgraded, and the reason says what was wrong.
            reason = f"the agent sent an unexpected answer ({type(exc).__name__}: {exc})"
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        delay = backoff.next()
        yield LinkDown(reason, delay, backoff.attempt, was_up)
        await sleep(delay)
