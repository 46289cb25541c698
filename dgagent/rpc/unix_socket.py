"""The socket file: a private directory, a 0600 Unix socket in it, and the peer's uid.

Startup order (research report B, §3.5): the socket's directory must be ours, mode 0700 and not
a symlink; a stale socket is unlinked; the bind happens under umask 0o177 and is followed by a
chmod 0600; every peer's uid is checked on accept.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
import stat
import struct
import sys
import threading
from pathlib import Path
from typing import Any

from dgagent.errors import DgError

log = logging.getLogger(__name__)

BACKLOG = 256
# Longest socket path the kernel takes: sun_path is 108 bytes on Linux, 104 (with NUL) on macOS.
_SUN_PATH_MAX = 103 if sys.platform == "darwin" else 108
# umask is process-wide: serialise our brief change and keep it around the bind() alone.
_UMASK_LOCK = threading.Lock()


def listen(path: Path) -> tuple[socket.socket, tuple[int, int]]:
    """Check the directory, replace a stale socket, bind 0600 and listen; DgError on failure."""
    size = len(os.fsencode(path))
    if size > _SUN_PATH_MAX:
        raise DgError(
            f"the socket path {path} is {size} bytes long, but Unix socket paths are limited to "
            f"{_SUN_PATH_MAX} bytes on this system (AF_UNIX sun_path); use a shorter runtime "
            f"directory (for example set XDG_RUNTIME_DIR)"
        )
    _prepare_dir(path.parent)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise DgError(f"{path} exists and is not a socket; remove it or use another path")
        os.unlink(path)  # stale: the caller holds the single-instance lock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = False
    try:
        with _UMASK_LOCK:
            old = os.umask(0o177)
            try:
                sock.bind(os.fspath(path))
            finally:
                os.umask(old)
        bound = True
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
        st = os.lstat(path)
    except (OSError, ValueError) as exc:
        sock.close()
        if bound:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DgError(f"cannot listen on {path}: {reason}") from exc
    return sock, (st.st_dev, st.st_ino)


def _prepare_dir(directory: Path) -> None:
    """The socket's directory must be a real directory, ours, reachable by nobody else."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        try:
            directory.mkdir(mode=0o700, parents=True)
            os.chmod(directory, 0o700)
        except OSError as exc:
            message = f"cannot create the socket directory {directory}: {exc.strerror}"
            raise DgError(message) from exc
        st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        raise DgError(f"the socket directory {directory} is a symbolic link; refusing to use it")
    if not stat.S_ISDIR(st.st_mode):
        raise DgError(f"the socket directory {directory} is not a directory")
    if st.st_uid != os.getuid():
        raise DgError(
            f"the socket directory {directory} belongs to uid {st.st_uid}, not to you "
            f"(uid {os.getuid()}); refusing to use it"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise DgError(
            f"the socket directory {directory} has mode {mode:04o}, so other users could reach "
            f"the socket; run: chmod 700 {directory}"
        )


def remove_socket(path: Path, bound: tuple[int, int] | None) -> None:
    """Unlink the socket only if it is still the one we bound (never another agent's)."""
    try:
        st = os.lstat(path)
        if bound is not None and (st.st_dev, st.st_ino) == bound:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove the socket %s: %s", path, exc)


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end, or None when the system will not say."""
    try:
        if sys.platform == "linux":
            # struct ucred: pid_t pid (signed), uid_t uid, gid_t gid (unsigned).
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
            _pid, uid, _gid = struct.unpack("iII", creds)
            return int(uid)
        if sys.platform == "darwin":
            return _getpeereid(sock.fileno())
    except OSError as exc:
        log.warning("could not read the peer's credentials: %s", exc)
    return None


def _getpeereid(fd: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    if libc.getpeereid(fd, ctypes.byref(uid), ctypes.byref(gid)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return int(uid.value)
