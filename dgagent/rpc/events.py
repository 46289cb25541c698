"""The agent's event bus: numbered events, a replay ring buffer, and callbacks that never block.

Workers publish what they do (``file.stored``, ``file.failed`` …, each a protocol.EventType
with its record from records.py); the socket server relays
each event to subscribed clients. Every event gets the next sequence number, so a client that
reconnects asks for the events ``since`` the last one it saw, and learns exactly which numbers
were lost when the ring buffer no longer holds them.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from dgagent.rpc.protocol import EventType
from dgagent.rpc.records import Event, Record

__all__ = ["Event", "EventBus", "utc_now"]

log = logging.getLogger(__name__)


def utc_now() -> str:
    """The current time as UTC ISO-8601 with milliseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventBus:
    """Thread-safe publisher with a ring buffer of the last ``capacity`` events for replay."""

    def __init__(self, capacity: int = 1000, *, clock: Callable[[], str] = utc_now) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self._lock = threading.Lock()
        self._buffer: deque[Event] = deque(maxlen=capacity)
        self._seq = 0
        self._clock = clock  # a fixed one keeps the fake agent's screenshots stable
        # Copy-on-write: publish() iterates a snapshot without holding the lock.
        self._callbacks: tuple[Callable[[Event], None], ...] = ()

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event (0 before the first)."""
        return self._seq

    def publish(self, type: EventType, data: Record | dict[str, str]) -> Event:
        """Number and buffer an event, then hand it to every subscriber; never blocks on them.

        ``data`` is the record records.EVENT_DATA names for ``type`` (a plain mapping only for
        ``watch.state``).
        """
        payload = data.to_json() if isinstance(data, Record) else dict(data)
        with self._lock:
            self._seq += 1
            event = Event(self._seq, self._clock(), type.value, payload)
            self._buffer.append(event)
            callbacks = self._callbacks
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                # A broken subscriber must not break the worker that published.
                log.exception("event subscriber %r failed on %s", callback, event.type)
        return event

    def since(self, seq: int) -> tuple[list[Event], int | None]:
        """Buffered events with a number above ``seq``, oldest first, and the first number lost.

        The second item is ``seq + 1`` when the buffer no longer reaches back that far (the lost
        range then ends just before the first returned event), else None.
        """
        seq = max(seq, 0)
        with self._lock:
            if not self._buffer or seq >= self._seq:
                return [], None
            oldest = self._buffer[0].seq
            start = max(seq + 1 - oldest, 0)
            events = list(itertools.islice(self._buffer, start, None))
        return events, (seq + 1 if seq + 1 < oldest else None)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` in the publisher's thread for each new event.

        The callback must return quickly and never block: it runs inside ``publish``. Returns a
        function that unsubscribes (calling it twice is harmless).
        """
        with self._lock:
            self._callbacks = (*self._callbacks, callback)

        def unsubscribe() -> None:
            with self._lock:
                remaining = list(self._callbacks)
                if callback in remaining:
                    remaining.remove(callback)
                    self._callbacks = tuple(remaining)

        return unsubscribe
