"""Tell systemd how the agent is doing: readiness, status, watchdog pings (sd_notify(3)).

The protocol is one datagram of ``KEY=value`` lines to the socket named in ``NOTIFY_SOCKET``, so
it needs no library. Messages the agent sends: ``READY=1`` (lock held, index open, socket
listening), ``STATUS=...``, ``WATCHDOG=1``, ``RELOADING=1`` and ``STOPPING=1``.

Outside systemd (launchd, a detached process, a terminal) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def sd_notify(message: str) -> bool:
    """Send ``message`` to the service manager; True when it was sent.

    False when the agent is not running under systemd or the socket cannot be reached: a lost
    status message must never stop the agent, so errors are logged at debug level, not raised.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    elif not address.startswith("/"):
        log.debug("NOTIFY_SOCKET=%r is not a Unix socket path; not notifying", address)
        return False
    # Python sockets are already non-inheritable (PEP 446); SOCK_CLOEXEC closes the gap at creation.
    kind = socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0)
    try:
        with socket.socket(socket.AF_UNIX, kind) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.debug("sd_notify(%r) to %r failed: %s", message, address, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings, or None when systemd expects none from this process.

    Half of ``WATCHDOG_USEC``, as sd_watchdog_enabled(3) advises, so one late ping is not fatal.
    ``WATCHDOG_PID``, when set, names the process the watchdog is meant for.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        if pid and int(pid) != os.getpid():
            return None
        value = int(usec) if usec else 0
    except ValueError:
        log.debug("ignoring WATCHDOG_USEC=%r / WATCHDOG_PID=%r: not integers", usec, pid)
        return None
    if value <= 0:
        return None
    return value / 2 / 1_000_000
