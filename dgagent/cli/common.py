"""What every store command shares: opening the store from flags, sizes for humans, progress."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from dgagent.client import open_store
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.store import DeltaStore
from dgagent.errors import NotFoundError
from dgagent.settings import POLICIES, EngineSettings, from_env
from dgagent.storage import Location, S3Options, parse_location


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """The AWS CLI's connection flags; each falls back to boto3's own AWS_* resolution."""
    group = parser.add_argument_group("store connection")
    group.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL)")
    group.add_argument("--profile", help="AWS profile from ~/.aws/config")
    group.add_argument("--region", help="AWS region")
    group.add_argument(
        "--checksum-when-required",
        action="store_true",
        help="send request checksums only when required (for S3-compatible servers that "
        "reject the newer checksum headers)",
    )


def add_reference_policy(parser: argparse.ArgumentParser) -> None:
    """The reference policy flag of every command that stores files."""
    parser.add_argument(
        "--reference-policy",
        choices=POLICIES,
        help="rotate (default: a version becomes a new reference once the deltas have drifted; "
        "DeltaGlider reads it) or single (one reference per folder, as DeltaGlider writes; "
        "all deltaglider_proxy can read); default DG_REFERENCE_POLICY or rotate",
    )


def s3_options(args: argparse.Namespace) -> S3Options:
    return S3Options(
        endpoint_url=getattr(args, "endpoint_url", None),
        profile=getattr(args, "profile", None),
        region=getattr(args, "region", None),
        checksum_when_required=getattr(args, "checksum_when_required", False),
    )


@dataclass
class Session:
    """Settings and shared objects for one command run."""

    args: argparse.Namespace
    settings: EngineSettings = field(default_factory=from_env)
    _cache: ReferenceCache | None = None

    def __post_init__(self) -> None:
        self.settings = self.settings.with_max_ratio(getattr(self.args, "max_ratio", None))
        policy = getattr(self.args, "reference_policy", None)
        self.settings = self.settings.with_reference_policy(policy)

    def location(self, url: str) -> Location:
        return parse_location(url, s3_options(self.args))

    def store(self, location: Location) -> DeltaStore:
        if self._cache is None:
            self._cache = ReferenceCache(
                self.settings.cache_dir, max_bytes=self.settings.cache_max_bytes
            )
        drawn = sys.stderr.isatty() and not getattr(self.args, "json", False)
        return open_store(
            location.storage,
            settings=self.settings,
            cache=self._cache,
            on_head=MetadataProgress() if drawn else None,
        )


def nothing_stored(url: str) -> NotFoundError:
    """The error of a command pointed at a path that holds nothing (a typo, most often): AWS's
    ``ls`` exits 1 there too, and ``verify``/``sync`` checking or copying nothing would look
    like success."""
    parent = url.rstrip("/").rpartition("/")[0] + "/"
    return NotFoundError(
        f"nothing is stored under {url}; check the path (dg-agent ls {parent} shows what is there)"
    )


def human(n: float | None, *, exact: bool = False) -> str:
    """Bytes for humans (binary units); ``exact`` keeps the plain integer.

    >>> human(0), human(1536), human(5 * 1024**3)
    ('0 B', '1.5 KiB', '5.0 GiB')
    """
    if n is None:
        return "?"
    if exact:
        return str(int(n))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def print_json(doc: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(doc, out, indent=2, sort_keys=True, default=str)
    out.write("\n")


class Progress:
    """A one-line status on stderr while long transfers run (only on a terminal)."""

    def __init__(self, total_files: int, *, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.total = total_files
        self.done = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._last = 0.0
        self._current = ""

    def start(self, name: str) -> None:
        with self._lock:
            self._current = name
        self._draw(force=True)

    def advance(self, n: int) -> None:
        with self._lock:
            self.bytes += n
        self._draw()

    def finish_one(self) -> None:
        with self._lock:
            self.done += 1
        self._draw(force=True)

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        line = f"[{self.done}/{self.total}] {human(self.bytes)} {self._current}"[:78]
        sys.stderr.write("\r\x1b[K" + line)
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    def say(self, line: str) -> None:
        """Print a permanent line above the status line."""
        with self._lock:
            self.clear()
            print(line, flush=True)
        self._draw(force=True)


class MetadataProgress:
    """``reading metadata 1200/3000`` on stderr while a listing HEADs objects it has not seen
    before (the store calls it: -N when N reads start, then 1 per read)."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()
        self._last = 0.0

    def __call__(self, n: int) -> None:
        with self._lock:
            if n < 0:
                self.total -= n
            else:
                self.done += n
            finished = self.done >= self.total
            now = time.monotonic()
            if not finished and now - self._last < 0.2:
                return
            self._last = now
            line = "" if finished else f"reading metadata {self.done}/{self.total}"
            sys.stderr.write("\r\x1b[K" + line)
            sys.stderr.flush()


def report_errors(errors: Iterable[str]) -> int:
    count = 0
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
        count += 1
    return count
