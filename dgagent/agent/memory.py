"""Giving memory back to the system once the agent goes idle (glibc's ``malloc_trim``).

glibc keeps freed heap in its arenas; after storing thousands of files that is tens of MB an
idle agent would hold for nothing. Elsewhere (macOS, musl) there is no ``malloc_trim`` and
trimming is a no-op.
"""

from __future__ import annotations

import ctypes
import sys


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def trim() -> None:
    """Give memory freed by a burst back to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
