"""Pure formatting for the screens: sizes, ratios, ages and bars (no textual import)."""

from __future__ import annotations

from typing import Any

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
MISSING = "\N{EN DASH}"  # for a value not known (yet)


def size(n: float | None) -> str:
    """Human size in SI units.

    >>> size(0), size(999), size(1234), size(5_300_000)
    ('0 B', '999 B', '1.2 kB', '5.3 MB')
    >>> size(None) == MISSING
    True
    """
    if n is None:
        return MISSING
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def ratio(r: float | None) -> str:
    """stored / original as a percentage.

    >>> ratio(0.0123), ratio(0.5)
    ('1.2%', '50%')
    """
    if r is None:
        return MISSING
    pct = r * 100
    return f"{pct:.1f}%" if pct < 10 else f"{pct:.0f}%"


def age(seconds: float) -> str:
    """A short age: seconds, minutes, hours, days.

    >>> age(4), age(125), age(7300), age(200000)
    ('4s', '2m', '2h', '2d')
    """
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def bar(fraction: float | None, width: int = 10) -> str:
    """A horizontal bar in eighths.

    >>> bar(0.5, 4), bar(1.0, 2), bar(None, 3)
    ('██  ', '██', '   ')
    """
    if fraction is None:
        return " " * width
    eighths = round(max(0.0, min(fraction, 1.0)) * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part else ""
    return ("█" * full + partial).ljust(width)[:width]


def codec_mark(codec: str | None) -> str:
    """A mark after a file's name when its delta needs dg-agent to read (the archive codec).

    >>> codec_mark("archive-v1"), codec_mark("compat"), codec_mark(None)
    ('  [archive-v1]', '', '')
    """
    return f"  [{codec}]" if codec and codec != "compat" else ""


def short_time(iso: str | None) -> str:
    """``HH:MM:SS`` from an agent timestamp like ``2026-11-25T10:00:01.123Z``."""
    return iso[11:19] if iso and len(iso) >= 19 else "--:--:--"


def event_text(event: dict[str, Any]) -> str:  # noqa: PLR0911 (one case per event type)
    """One line that says what an agent event means."""
    kind, data = str(event.get("type", "?")), event.get("data") or {}
    path = data.get("path", "")
    if kind == "file.stored":
        return (
            f"stored    {path}{codec_mark(data.get('codec'))}  {data.get('kind')}  "
            f"{size(data.get('original_size'))} → "
            f"{size(data.get('stored_size'))} ({ratio(data.get('ratio'))})"
            + ("  cache hit" if data.get("cache_hit") else "")
        )
    if kind == "file.retry":
        return f"retry     {path}  attempt {data.get('attempt')}: {data.get('error')}"
    if kind == "file.failed":
        return f"failed    {path}: {data.get('error')}"
    if kind in ("file.queued", "file.uploading"):
        return f"{kind[5:]:<9} {path}  {size(data.get('size'))}"
    if kind == "file.deleted":
        return f"deleted   {path}"
    if kind == "scan.finished":
        return (
            f"scan      {data.get('watch')}: {data.get('files')} files, {data.get('changed')} "
            f"changed, {data.get('errors')} errors in {data.get('seconds')} s"
        )
    if kind == "events.dropped":
        return f"lost events {event.get('from')} to {event.get('to')} (re-read the state)"
    rest = " ".join(f"{k}={v}" for k, v in data.items())
    return f"{kind}  {rest}".rstrip()
