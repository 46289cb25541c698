"""The archive codec's differ for machine code: HDiffPatch, in memory, for one member at a time.

xdelta3 finds copies of byte runs; in machine code a small change shifts every later address and
branch offset by a little, so most runs are short and the delta stays large. HDiffPatch (a suffix
array over the old member, then LZMA2 over the differences) matches such code far better: on the
10.4 MB ``_multiarray_umath`` of two numpy patch releases it made 45 KB where ``xdelta3 -9`` made
215 KB. It holds both members and its index of the old one in memory (the index about 4 bytes
per byte of the old member, measured on 10.4 and 22.5 MB members), so it is used only up to
``MAX_MEMBER``; larger members stay with xdelta3, which streams. Small members gain nothing
worth a separate part.
"""

from __future__ import annotations

import logging
from typing import Final

import hdiffpatch

from dgagent.errors import IntegrityError

log = logging.getLogger(__name__)

__all__ = [
    "COMPRESSION",
    "MAX_MEMBER",
    "MIN_MEMBER",
    "apply",
    "diff",
    "is_machine_code",
]

MIN_MEMBER = 64 * 1024
"""Smaller members stay in the xdelta3 part (a part costs a header and LZMA2's own framing)."""
MAX_MEMBER = 64 * 1024**2
"""Larger members (old or new) stay in the xdelta3 part: this bounds HDiffPatch's memory to about
6 x 64 MiB (400 MB: both members and the index) while it diffs, and old + patch + new (under
200 MB) while it applies; a reader holds up to this much of members applied ahead besides
(``archive_v2``: made while xdelta3 decodes the plan)."""
COMPRESSION: Final = "lzma2"

# ELF; PE/COFF (DLLs, .pyd); Mach-O 32/64 both byte orders and fat binaries; ar archives (.a);
# WebAssembly.
_MAGICS = (
    b"\x7fELF",
    b"MZ",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
    b"!<arch>\n",
    b"\x00asm",
)


def is_machine_code(head: bytes) -> bool:
    """Whether a member starting with ``head`` is an executable, a library or an object file.

    >>> is_machine_code(b"\\x7fELF\\x02\\x01\\x01"), is_machine_code(b"import os\\n")
    (True, False)
    """
    return head.startswith(_MAGICS)


def diff(old: bytes, new: bytes) -> bytes | None:
    """A patch that turns ``old`` into ``new`` (the caller checks it by rebuilding); None when
    HDiffPatch cannot make one (then the member stays with xdelta3)."""
    try:
        return hdiffpatch.diff(old, new, COMPRESSION, validate=False)
    except (hdiffpatch.HDiffPatchError, MemoryError) as exc:
        log.warning("HDiffPatch could not diff a member (%s); xdelta3 takes it", exc)
        return None


def apply(old: bytes, patch: bytes) -> bytes:
    """``new`` from ``old`` and ``patch`` (the caller checks its size)."""
    try:
        new = hdiffpatch.apply(old, patch)
    except (hdiffpatch.HDiffPatchError, MemoryError, ValueError) as exc:
        raise IntegrityError(
            f"a member's HDiffPatch part does not apply ({exc}): the delta or its reference "
            "is damaged"
        ) from exc
    return new
