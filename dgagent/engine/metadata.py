"""DeltaGlider object metadata: the superset we write, and every alias upstream ever wrote.

Writing the superset (upstream 6.x keys plus the proxy's ``dg-ref-path`` and ``dg-note`` values)
keeps what we store readable by both DeltaGlider tools. Reading accepts ``dg-x-y``, ``dg_x_y``,
``x_y`` and ``x-y`` for every field, in any letter case (some servers capitalise the keys), so
buckets written by any upstream version work.

AWS refuses more than 2 KB of user metadata (keys and values, UTF-8 bytes) and some servers take
less, so everything written is kept within ``BUDGET``: the delta command records no file name,
and a name too long to fit is cut in ``dg-original-name`` / ``dg-source-name`` (informational
there: every reader takes the name from the key). What still cannot fit is refused before
anything is written.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from dgagent.engine.keys import REFERENCE_NAME, is_delta, is_reference, relative_to_space
from dgagent.engine.rotation import COST_KEY, WHY_KEY
from dgagent.errors import NameTooLongError
from dgagent.version import __version__

TOOL = f"dg-agent/{__version__}"
ZERO_DIFF_NOTE = "zero-diff (reference identical)"
MTIME_KEY = "dg-agent-mtime"
"""Our own key: the source file's mtime (seconds, decimal), so sync can compare without guessing."""
CODEC_KEY = "dg-agent-codec"
"""Our own key on deltas of a codec other than plain xdelta3 (``archive-v1``); absent: compat."""
ZLIB_KEY = "dg-agent-zlib"
"""Informational: the zlib version that expanded an archive-codec delta's members."""

AWS_LIMIT = 2048
"""Bytes of user metadata (keys and values) AWS accepts on one object."""
BUDGET = 1600
"""What we write at most, counted as the strictest server we know counts: every header whole,
``x-amz-meta-`` prefix included (rclone serve s3 1.75 refused 1,666 bytes so counted, with the
Content-Type we send). That is well under AWS's limit, which does not count the prefix."""
HEADER_PREFIX = "x-amz-meta-"
CUT_MARK = "..."

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Everything printable in ASCII except '%' stays readable; the rest is percent-encoded.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


class Kind(enum.Enum):
    """How an object is stored."""

    REFERENCE = "reference"
    DELTA = "delta"
    DIRECT = "direct"
    PLAIN = "plain"
    """No DeltaGlider metadata at all: an ordinary S3 object, read raw and unchecked."""


def ascii_value(text: str) -> str:
    """Percent-encode what S3 metadata cannot carry (non-ASCII, controls, '%').

    >>> ascii_value("café-1.0.zip")
    'caf%C3%A9-1.0.zip'
    """
    return quote(text, safe=_SAFE)


def _printable_ascii(text: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in text)


def now_iso() -> str:
    """UTC ISO-8601 with a trailing Z, as upstream writes ``dg-created-at``."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat() + "Z"


def _common(name: str, sha256: str, size: int, mtime: float | None) -> dict[str, str]:
    meta = {
        "dg-tool": TOOL,
        "dg-original-name": ascii_value(name),
        "dg-file-sha256": sha256,
        "dg-file-size": str(size),
        "dg-created-at": now_iso(),
    }
    if mtime is not None:
        meta[MTIME_KEY] = f"{mtime:.6f}"
    return meta


def metadata_size(meta: Mapping[str, str], *, prefix: str = "") -> int:
    """Bytes of user metadata as AWS counts them (every key and value, UTF-8 encoded), or with
    ``prefix`` as a server that counts whole headers does."""
    return sum(len(prefix) + len(k.encode()) + len(v.encode()) for k, v in meta.items())


def _fit(meta: dict[str, str], name_field: str, what: str) -> dict[str, str]:
    """``meta`` within BUDGET, cutting the (informational) name if it has to; else refuse."""
    over = metadata_size(meta, prefix=HEADER_PREFIX) - BUDGET
    if over <= 0:
        return meta
    name = meta[name_field]
    keep = len(name) - over - len(CUT_MARK)
    # Never cut inside a %XX escape, nor between the escapes of one UTF-8 character (the
    # next byte a continuation byte, %80-%BF): either would leave an undecodable value.
    while keep > 0 and "%" in name[max(0, keep - 2) : keep]:
        keep -= 1
    while keep > 0 and name[keep : keep + 2] in ("%8", "%9", "%A", "%B"):
        keep -= 3
    if keep < 1:
        raise NameTooLongError(
            f"cannot store {what}: its folder path is too long for the "
            f"{AWS_LIMIT} bytes of metadata S3 allows an object (some servers allow less); "
            "store it under a shorter folder path"
        )
    return {**meta, name_field: name[:keep] + CUT_MARK}


def reference_metadata(source_name: str, sha256: str, size: int) -> dict[str, str]:
    meta = {
        "dg-tool": TOOL,
        "dg-source-name": ascii_value(source_name),
        "dg-file-sha256": sha256,
        "dg-file-size": str(size),
        "dg-created-at": now_iso(),
        "dg-note": "reference",
    }
    return _fit(meta, "dg-source-name", source_name)


def delta_metadata(
    *,
    name: str,
    sha256: str,
    size: int,
    ref_key: str,
    ref_sha256: str,
    delta_size: int,
    zero_diff: bool,
    mtime: float | None,
    codec: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Delta metadata; a ``codec`` (not compat) is recorded under ``dg-agent-codec``, and the
    upstream keys stay, so DeltaGlider decodes, fails its SHA-256 check and writes nothing.

    ``dg-ref-key`` names the reference bucket-wide (what DeltaGlider 6.2.0 follows), and
    ``dg-ref-path`` relative to the delta's folder (what deltaglider_proxy reads)."""
    meta = _common(name, sha256, size, mtime)
    meta.update(
        {
            "dg-ref-key": ref_key if _printable_ascii(ref_key) else ascii_value(ref_key),
            "dg-ref-path": relative_to_space(ref_key),
            "dg-ref-sha256": ref_sha256,
            "dg-delta-size": str(delta_size),
            "dg-delta-cmd": f"xdelta3 -e -9 -D -R -s {REFERENCE_NAME}",
            "dg-note": ZERO_DIFF_NOTE if zero_diff else "delta",
        }
    )
    if codec is not None:
        meta[CODEC_KEY] = codec
        meta["dg-delta-cmd"] = f"{codec}: expand, xdelta3 -e -9 -D -R, see dg-agent"
    meta.update(extra or {})
    return _fit(meta, "dg-original-name", name)


def direct_metadata(
    *, name: str, sha256: str, size: int, mtime: float | None, why: str = ""
) -> dict[str, str]:
    meta = _common(name, sha256, size, mtime)
    meta.update({"dg-compression": "none", "dg-note": "passthrough"})
    if why:
        meta[WHY_KEY] = ascii_value(why)
    return _fit(meta, "dg-original-name", name)


@functools.cache
def _aliases(name: str) -> tuple[str, ...]:
    snake = name.replace("-", "_")
    return (f"dg-{name}", f"dg_{snake}", snake, name)


def _field(meta: Mapping[str, str], name: str) -> str | None:
    """First non-empty value among the aliases of ``name`` (given as ``x-y``). Built once per
    name: a listing of 20,000 objects parses 20,000 metadata dicts."""
    for alias in _aliases(name):
        value = meta.get(alias)
        if value:
            return value
    return None


def _int(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)


@dataclass(frozen=True)
class StoredMeta:
    """What an object's metadata says, whichever dialect wrote it."""

    kind: Kind
    original_name: str | None
    file_sha256: str | None
    file_size: int | None
    ref_key: str | None
    ref_path: str | None
    ref_sha256: str | None
    tool: str | None
    note: str | None
    mtime: float | None
    codec: str | None = None
    """``dg-agent-codec``: None for compat (plain xdelta3) deltas and every other kind."""
    why: str | None = None
    """``dg-agent-why``: why dg-agent stored it as it is (rotation.py); None from others."""
    cost: str | None = None
    """``dg-agent-cost`` on a delta: its reference's rotation state after it (rotation.py)."""
    created_at: str | None = None
    """``dg-created-at``: when the file was first stored (UTC ISO-8601, as upstream writes it)."""

    @property
    def zero_diff(self) -> bool:
        return self.kind is Kind.DELTA and (self.note or "").startswith("zero-diff")


def parse_metadata(key: str, meta: Mapping[str, str]) -> StoredMeta:
    """Classify an object and pull out its fields; never raises (validation is the reader's job)."""
    lower = {k.lower(): v for k, v in meta.items()}
    sha = _field(lower, "file-sha256")
    note = _field(lower, "note")
    compression = _field(lower, "compression")
    sha = sha.lower() if sha else None
    if sha is None:
        kind = Kind.PLAIN
    elif is_reference(key) or note == "reference":
        kind = Kind.REFERENCE
    elif compression == "none" or note == "passthrough":
        kind = Kind.DIRECT
    elif is_delta(key) or _field(lower, "ref-key") or lower.get("dg-ref-path"):
        kind = Kind.DELTA
    else:
        kind = Kind.DIRECT
    name = _field(lower, "original-name") or _field(lower, "source-name")
    mtime_text = lower.get(MTIME_KEY)
    try:
        mtime = float(mtime_text) if mtime_text else None
    except ValueError:
        mtime = None
    tool = _field(lower, "tool")
    # Only our own names are percent-encoded; other writers' values are taken literally. The
    # ref-key is always literal: upstream follows it as a key, and we write it raw when ASCII.
    ours = (tool or "").startswith("dg-agent/")
    return StoredMeta(
        kind=kind,
        original_name=(unquote(name) if ours else name) if name else None,
        file_sha256=sha,
        file_size=_int(_field(lower, "file-size")),
        ref_key=_field(lower, "ref-key"),
        ref_path=lower.get("dg-ref-path"),
        ref_sha256=(_field(lower, "ref-sha256") or "").lower() or None,
        tool=tool,
        note=note,
        mtime=mtime,
        codec=lower.get(CODEC_KEY) or None,
        why=unquote(lower[WHY_KEY]) if ours and lower.get(WHY_KEY) else None,
        cost=lower.get(COST_KEY) or None,
        created_at=_field(lower, "created-at"),
    )


def is_sha256(value: str | None) -> bool:
    return value is not None and bool(_SHA256.match(value))
