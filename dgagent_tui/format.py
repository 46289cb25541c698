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


def spark(values: list[float], width: int, *, top: float, rows: int = 1) -> list[str]:
    """Vertical bars, one column per value (newest at the right), ``rows`` lines high, scaled
    from 0 to ``top``. Zero draws nothing, any value above zero at least the lowest eighth, so
    an idle minute is blank rather than a row of small bars that look like data.

    >>> spark([0, 1, 4, 8], 6, top=8)
    ['   ▁▄█']
    >>> spark([2, 16], 2, top=16, rows=2)
    [' █', '▂█']
    """
    shown = values[-width:] if width > 0 else []
    levels = rows * 8
    lines = []
    for row in range(rows - 1, -1, -1):  # top line first
        line = ""
        for value in shown:
            height = 0 if value <= 0 or top <= 0 else max(1, round(min(value / top, 1) * levels))
            filled = height - row * 8
            line += " " if filled <= 0 else "█" if filled >= 8 else " ▁▂▃▄▅▆▇"[filled]
        lines.append(line.rjust(width) if width > 0 else "")
    return lines


def codec_mark(codec: str | None) -> str:
    """A mark after a file's name when its delta needs dg-agent to read (the archive codec).

    >>> codec_mark("archive-v1"), codec_mark("compat"), codec_mark(None)
    ('  [archive-v1]', '', '')
    """
    return f"  [{codec}]" if codec and codec != "compat" else ""


def short_time(iso: str | None) -> str:
    """``HH:MM:SS`` from an agent timestamp like ``2026-11-25T10:00:01.123Z``."""
    return iso[11:19] if iso and len(iso) >= 19 else "--:--:--"


def value_text(value: Any) -> str:
    """A value from an event's data as a person writes it: lists comma-joined, nothing for None.

    >>> value_text(["/a", "/b"]), value_text([]), value_text(None), value_text({"x": 1})
    ('/a, /b', '', '', 'x 1')
    >>> value_text(True), value_text(0.25)
    ('yes', '0.25')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set):
        return ", ".join(t for t in (value_text(v) for v in value) if t)
    if isinstance(value, dict):
        return ", ".join(f"{k} {t}" for k, t in ((k, value_text(v)) for k, v in value.items()) if t)
    return str(value)


def _fields(data: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """``name value`` pairs of the fields that say something (empty lists and None left out)."""
    parts = ((k, value_text(v)) for k, v in data.items() if k not in skip)
    return "  ".join(f"{k} {text}" for k, text in parts if text)


def severity(event: dict[str, Any]) -> str | None:
    """ "error" for an event that reports a failure, "warning" for one that needs an eye on it.

    The queue colours its rows with the same two words, so a failure looks alike everywhere.

    >>> severity({"type": "file.failed"}), severity({"type": "file.retry"})
    ('error', 'warning')
    >>> severity({"type": "scan.finished", "data": {"errors": []}}) is None
    True
    """
    kind, data = event.get("type"), event.get("data") or {}
    if kind == "file.failed":
        return "error"
    if kind in ("file.retry", "delete.refused", "events.dropped"):
        return "warning"
    if kind == "scan.finished" and (data.get("errors") or data.get("root_missing")):
        return "warning"
    return None


def event_text(event: dict[str, Any]) -> str:  # noqa: PLR0911, PLR0912 (a case per event type)
    """What an agent event means, in words (never a Python repr of its data)."""
    kind, data = str(event.get("type", "?")), event.get("data") or {}
    path = data.get("path", "")
    if kind == "file.stored":
        return (
            f"stored    {path}{codec_mark(data.get('codec'))}  {data.get('kind')}  "
            f"{size(data.get('original_size'))} → "
            f"{size(data.get('stored_size'))} ({ratio(data.get('ratio'))} of the original)"
            + ("  cache hit" if data.get("cache_hit") else "")
        )
    if kind == "file.retry":
        return (
            f"retry     {path}  attempt {data.get('attempt')}, next in {data.get('delay')} s: "
            f"{data.get('error')}"
        )
    if kind == "file.failed":
        return f"failed    {path}: {data.get('error')}"
    if kind in ("file.queued", "file.uploading"):
        return f"{kind[5:]:<9} {path}  {size(data.get('size'))}"
    if kind == "file.deleted":
        return f"deleted   {path}"
    if kind == "scan.finished":
        missing = "  (the watched folder is missing)" if data.get("root_missing") else ""
        return (
            f"scan      {data.get('watch')}: {data.get('files')} files, {data.get('changed')} "
            # errors: the first few messages (records.ScanFinished), so their count here
            f"changed, {data.get('deletes') or 0} deleted, {len(data.get('errors') or [])} errors "
            f"in {data.get('seconds')} s{missing}"
        )
    if kind == "scan.started":
        return f"scan      {data.get('watch')} started"
    if kind in ("agent.started", "agent.stopping", "config.reloaded"):
        what = {"agent.started": "agent started", "agent.stopping": "agent stopping"}
        watches = value_text(data.get("watches")) or "no folders"
        pid = f" (pid {data['pid']})" if data.get("pid") else ""
        return f"{what.get(kind, 'config reloaded')}{pid}, watching {watches}"
    if kind in ("agent.paused", "agent.resumed"):
        return f"syncing {kind[6:]} for {data.get('watch') or 'every watched folder'}"
    if kind == "watch.state":
        return "watch     " + "; ".join(f"{w}: {value_text(st)}" for w, st in data.items())
    if kind == "delete.refused":
        return f"delete refused in {data.get('watch')}: {data.get('reason')}"
    if kind == "prune.finished":
        why = f"retention of {data['watch']}" if data.get("watch") else "asked for"
        return (
            f"pruned    {data.get('url')} ({why}): {data.get('deleted')} versions and "
            f"{data.get('references')} references deleted, {size(data.get('freed'))} back"
        )
    if kind == "events.dropped":
        return f"lost events {event.get('from')} to {event.get('to')} (re-read the state)"
    return f"{kind}  {_fields(data)}".rstrip()
