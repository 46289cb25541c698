"""The single-instance lock: one agent per user, found through a lock file in the runtime folder.

The lock is an ``flock`` on ``agent.lock``, so it goes away with the process however that ends
(no stale lock after a crash); the file holds the pid, for the message a second agent prints.
The runtime folder is checked first because the socket lives there too: a folder someone else
owns or can enter would let them talk to the agent.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time

from dgagent.errors import ConfigError, DgError
from dgagent.rpc.paths import AgentPaths

PROBE_RETRY = 0.2
"""How long a starting agent retries a taken lock: held() takes it for microseconds."""


class AlreadyRunningError(DgError):
    """Another agent holds the lock."""


def _try_lock(fd: int, kind: int) -> bool:
    deadline = time.monotonic() + PROBE_RETRY
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        else:
            return True


def held(paths: AgentPaths) -> bool:
    """Whether an agent holds the lock, that is, runs (or has not finished stopping).

    The agent lets go of the lock as the last step of its shutdown, after closing its index,
    and the kernel does when it dies: unlike its pid (a zombie until its parent reaps it) or
    its socket (gone before the index is closed), the lock tells when it is really done.
    """
    try:
        fd = os.open(paths.lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops our shared lock at once, should we have got it
    return False


class InstanceLock:
    def __init__(self, paths: AgentPaths) -> None:
        self.paths = paths
        self._fd: int | None = None

    def acquire(self) -> None:
        runtime = self.paths.runtime_dir
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.lstat(runtime)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise ConfigError(
                f"the runtime folder {runtime} is not a folder owned by you; remove it or set "
                "XDG_RUNTIME_DIR to a private folder"
            )
        os.chmod(runtime, 0o700)
        self.paths.check_socket_length()
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if not _try_lock(fd, fcntl.LOCK_EX):
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunningError(f"dg-agent is already running (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
