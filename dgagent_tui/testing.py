"""A fake agent for tests and demos: the real socket server, scripted state and events.

It reuses the agent's own protocol implementation (``RpcServer`` and ``EventBus``) and builds
every answer and event from the protocol's records (dgagent.rpc.records), so it cannot send a
field or an event the agent does not (mypy and the records' constructors refuse it), and
tests/tui/test_fake_agent.py compares what both send. The TUI is thus tested against the exact wire
format over a real Unix socket, without S3 or files being stored. It can stop and start again on
the same path, to exercise reconnects.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dgagent.rpc import ErrorCode, EventType, Method, NotFound, RpcError
from dgagent.rpc.events import EventBus
from dgagent.rpc.records import (
    EVENT_DATA,
    BrowseEntry,
    ByteTotals,
    CacheStats,
    Deleted,
    FileStored,
    ItemRef,
    Listing,
    Paused,
    Problem,
    Pruned,
    QueueItem,
    QueuePage,
    Retried,
    Status,
    Stores,
    Summary,
    Transfer,
    Transfers,
    Verified,
    WatchStatus,
    Written,
    ratio,
)
from dgagent.rpc.server import RpcServer

FROZEN_TIME = "2026-11-25T10:00:00.000Z"
FROZEN_EPOCH = 1_795_600_000.0


@dataclass
class FakeFile:
    key: str
    content: bytes
    kind: str = "delta"
    stored_size: int = 0
    codec: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def record(self) -> BrowseEntry:
        original = len(self.content)
        delta = self.kind == "delta"
        return BrowseEntry(
            key=self.key,
            name=self.key.rsplit("/", 1)[-1],
            stored_key=self.key + ".delta" if delta else self.key,
            kind=self.kind,
            stored_as="delta" if delta else "whole",
            codec=self.codec,
            original_size=original,
            stored_size=self.stored_size,
            ratio=ratio(self.stored_size, original),
            sha256=self.sha256,
            tool="dg-agent/0.1.0-fake",
            last_modified="2026-11-25T09:00:00+00:00",
            why=None,
            reference=self.key.rsplit("/", 1)[0] + "/reference.bin" if delta else None,
        )


@dataclass
class FakeState:
    """What the fake agent reports; tests edit it freely (under ``lock``)."""

    status: Status
    items: list[QueueItem] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    root: str = "s3://releases"
    files: dict[str, FakeFile] = field(default_factory=dict)  # key → file
    reference_sizes: dict[str, int] = field(default_factory=dict)  # DeltaSpace prefix → size
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # ``status``'s "problems"; None leaves the field out, as an agent from before it does
    problems: list[Problem] | None = field(default_factory=list)


class FakeAgent:
    """Serve ``state`` on ``socket_path`` until stopped; ``publish`` pushes events."""

    def __init__(
        self, socket_path: Path, state: FakeState | None = None, *, history: int = 1000
    ) -> None:
        self.socket_path = Path(socket_path)
        self.state = state or demo_state()
        # events kept for replay, as the agent keeps 1,000; at one time, for stable screenshots
        self.bus = EventBus(history, clock=lambda: FROZEN_TIME)
        self._server: RpcServer | None = None

    def start(self) -> None:
        info = {"agent": "0.1.0-fake", "pid": 4242, "started": FROZEN_EPOCH, "instance": "fake"}
        self._server = RpcServer(self.socket_path, self._handlers(), self.bus, info=info)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def publish(self, type: EventType | str, **data: Any) -> None:
        """Push an event; ``data`` are the fields of its record (records.EVENT_DATA), all of
        them and no others, or the record's constructor refuses."""
        kind = EventType(type)
        record = EVENT_DATA[kind]
        self.bus.publish(kind, record(**data) if record is not None else data)

    def seed_events(self) -> None:
        """A short, fixed history for the activity log."""
        watch = "/home/me/builds"
        self.publish("agent.started", pid=4242, watches=[watch])
        self.publish("scan.started", watch=watch)
        for n in range(3):
            path = f"app/app-1.{n}.zip"
            self.publish("file.queued", watch=watch, path=path, size=48_000_000)
            self.publish("file.uploading", watch=watch, path=path, size=48_000_000)
            stored = stored_file(watch, path, 48_000_000, 310_000 + n, cache_hit=n > 0)
            self.bus.publish(EventType.FILE_STORED, stored)
        failing = {"watch": watch, "path": "app/app-1.11.zip", "op": "put", "error": "SlowDown"}
        self.publish("file.retry", **failing, attempt=1, delay=2.0)
        self.publish("file.failed", **failing)
        self.publish(
            "scan.finished",
            watch=watch,
            files=12,
            changed=3,
            deletes=0,
            errors=[],
            root_missing=False,
            seconds=0.2,
        )

    def called(self, method: str) -> list[dict[str, Any]]:
        with self.state.lock:
            return [params for name, params in self.state.calls if name == method]

    # -- handlers ------------------------------------------------------------------------------

    def _handlers(self) -> dict[str, Any]:  # noqa: PLR0915 (one table of small closures)
        s = self.state

        def record(name: str, params: dict[str, Any]) -> None:
            with s.lock:
                s.calls.append((name, params))

        def key_of(url: str) -> str:
            if not url.startswith(s.root + "/"):
                raise NotFound(f"{url} is not in {s.root}")
            return url[len(s.root) + 1 :]

        def file_of(params: dict[str, Any]) -> FakeFile:
            key = key_of(str(params.get("url", "")))
            if key not in s.files:
                raise RpcError(ErrorCode.APP_ERROR, f"{params.get('url')} does not exist")
            return s.files[key]

        def queue(p: dict[str, Any]) -> Any:
            record("queue", p)
            state = p.get("state")
            items = [i for i in s.items if state is None or i.state == state]
            offset, limit = int(p.get("offset", 0)), int(p.get("limit", 100))
            counts: dict[str, int] = {}
            for item in s.items:
                counts[item.state] = counts.get(item.state, 0) + 1
            return QueuePage(items[offset : offset + limit], counts)

        def browse_list(p: dict[str, Any]) -> Any:
            record("browse.list", p)
            prefix = key_of(str(p["url"]).rstrip("/") + "/") if p["url"] != s.root else ""
            children: set[str] = set()
            files: list[BrowseEntry] = []
            for key in sorted(s.files):
                if not key.startswith(prefix):
                    continue
                rest = key[len(prefix) :]
                if "/" in rest:
                    children.add(prefix + rest.split("/", 1)[0] + "/")
                else:
                    files.append(s.files[key].record())
            rows: list[str | BrowseEntry] = [*sorted(children), *files]
            offset, limit = int(p.get("offset", 0)), int(p.get("limit", 1000))
            page = rows[offset : offset + limit]
            reference = s.reference_sizes.get(prefix.rstrip("/"))
            original = sum(f.original_size or 0 for f in files)
            stored = sum(f.stored_size for f in files) + (reference or 0)
            saved = original - stored
            summary = Summary(
                files=len(files),
                original_bytes=original,
                stored_bytes=stored,
                saved_bytes=saved,
                saved_percent=100 * saved / original if original else 0.0,
                complete=True,
            )
            return Listing(
                url=f"{s.root}/{prefix}",
                prefixes=[r for r in page if isinstance(r, str)],
                files=[r for r in page if isinstance(r, BrowseEntry)],
                reference_size=reference,
                summary=summary,
                total=len(rows),
                offset=offset,
            )

        def download(p: dict[str, Any]) -> Any:
            record("download", p)
            f = file_of(p)
            dest = Path(str(p["dest"])).expanduser()
            if dest.is_dir():
                dest = dest / f.key.rsplit("/", 1)[-1]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(f.content)
            return Written(str(p["url"]), str(dest), f.sha256, len(f.content), f.kind)

        def verify(p: dict[str, Any]) -> Any:
            record("verify", p)
            f = file_of(p)
            return Verified(str(p["url"]), True, f.sha256, len(f.content), f.kind)

        def delete(p: dict[str, Any]) -> Any:
            record("delete", p)
            f = file_of(p)
            with s.lock:
                del s.files[f.key]
            return Deleted([str(p["url"])], None)

        def prune(p: dict[str, Any]) -> Any:
            """The last ``keep_last`` files of the folder (by name) stay; no references."""
            record("prune", p)
            url = str(p["url"]).rstrip("/") + "/"
            prefix = key_of(url) if url != s.root + "/" else ""
            keep = int(p.get("keep_last") or 0)
            dryrun = bool(p.get("dryrun", False))
            with s.lock:
                under = sorted(k for k in s.files if k.startswith(prefix))
                gone = under[: max(0, len(under) - keep)] if keep else []
                before = sum(s.files[k].stored_size for k in under)
                freed = sum(s.files[k].stored_size for k in gone)
                if not dryrun:
                    for key in gone:
                        del s.files[key]
            return Pruned(
                url=url,
                dryrun=dryrun,
                rule=f"keep the last {keep}" if keep else "keep every version",
                deleted=[f"{s.root}/{k}" for k in gone],
                kept=len(under) - len(gone),
                references_deleted=[],
                retired=0,
                reencoded=0,
                stored_before=before,
                stored_after=before - freed,
                freed=freed,
                notes=[],
            )

        def restore(p: dict[str, Any]) -> Any:
            record("restore", p)
            f = file_of(p)
            dest = f"/home/me/builds/{f.key}"
            return Written(str(p["url"]), dest, f.sha256, len(f.content), f.kind)

        def status(p: dict[str, Any]) -> Any:
            with s.lock:
                answer = replace(s.status, problems=list(s.problems or [])).to_json()
            if s.problems is None:
                del answer["problems"]
            return answer

        def simple(name: str, result: Any) -> Any:
            def handler(p: dict[str, Any]) -> Any:
                record(name, p)
                return result

            return handler

        def item(name: str) -> Any:
            def handler(p: dict[str, Any]) -> Any:
                record(name, p)
                if name == "retry" and "path" not in p:
                    return Retried(sum(i.state == "failed" for i in s.items))
                return ItemRef(str(p.get("watch")), str(p.get("path")))

            return handler

        table = {
            Method.STATUS: status,
            Method.QUEUE: queue,
            Method.TRANSFERS: lambda p: Transfers(list(s.transfers)),
            Method.BROWSE_BUCKETS: lambda p: Stores([s.root], None),
            Method.BROWSE_LIST: browse_list,
            Method.DOWNLOAD: download,
            Method.VERIFY: verify,
            Method.RESTORE: restore,
            Method.DELETE: delete,
            Method.PRUNE: prune,
            Method.PAUSE: simple("pause", Paused(True)),
            Method.RESUME: simple("resume", Paused(False)),
            Method.RESCAN: simple("rescan", {"requested": True}),
            Method.RETRY: item("retry"),
            Method.CANCEL: item("cancel"),
        }
        return {str(method): handler for method, handler in table.items()}


def stored_file(
    watch: str,
    path: str,
    original: int,
    stored: int,
    *,
    cache_hit: bool | None = None,
    seconds: float = 1.5,
    codec: str | None = "compat",
) -> FileStored:
    """The ``file.stored`` data of a file stored as a delta, as the agent sends it."""
    return FileStored(
        watch=watch,
        path=path,
        op="put",
        key=path,
        kind="delta",
        codec=codec,
        original_size=original,
        stored_size=stored,
        ratio=ratio(stored, original),
        cache_hit=cache_hit,
        seconds=seconds,
        why=f"delta: {ratio(stored, original) or 0:.1%} of the file",
    )


def demo_problems(watch: str = "/home/me/builds") -> list[Problem]:
    """Problems of the kinds the agent reports, for tests and screenshots."""
    return [
        Problem(
            watch=None,
            problem="xdelta3 was not found on PATH",
            fix="install xdelta3, then: dg-agent stop && dg-agent start",
        ),
        Problem(
            watch=watch,
            problem=f"1 file failed in {watch}; the last error: SlowDown",
            fix=f"fix the cause, then: dg-agent retry {watch}",
        ),
    ]


def demo_state(rows: int = 12) -> FakeState:
    """A fixed, plausible agent: a few files in every state and a store to browse."""
    watch = "/home/me/builds"
    items: list[QueueItem] = []
    transfers: list[Transfer] = []
    for n in range(rows):
        original = 48_000_000 + n * 1_250_000
        stored = 310_000 + (n * 7919) % 200_000
        state = (
            "stored" if n < rows - 4 else ("uploading", "queued", "queued", "failed")[n - rows + 4]
        )
        done = state == "stored"
        path = f"app/app-1.{n}.zip"
        items.append(
            QueueItem(
                watch=watch,
                path=path,
                state=state,
                op="put",
                key=path if done else None,
                kind="delta" if done else None,  # never "reference": a file is a delta or direct
                codec="compat" if done else None,
                original_size=original,
                stored_size=stored if done else None,
                ratio=ratio(stored, original) if done else None,
                cache_hit=n % 3 != 0 if done else None,
                attempts=3 if state == "failed" else 0,
                next_attempt=None,
                error="SlowDown: reduce your request rate" if state == "failed" else None,
                updated=FROZEN_EPOCH - 60 * (rows - n),
                why=None,
            )
        )
        if done:
            transfers.append(
                Transfer(
                    id=n + 1,
                    time=FROZEN_EPOCH - 4 * (rows - n),
                    watch=watch,
                    path=path,
                    op="put",
                    key=path,
                    kind="delta",
                    codec="compat",
                    original_size=original,
                    stored_size=stored,
                    ratio=ratio(stored, original),
                    cache_hit=n % 3 != 0,
                    seconds=1.5,
                    error=None,
                    why=None,
                )
            )
    transfers.reverse()  # newest first, as the agent answers
    status = Status(
        pid=4242,
        version="0.1.0-fake",
        started=FROZEN_EPOCH - 3600.0,
        uptime=3600.0,
        idle=False,
        paused=False,
        disk_full=None,
        scanning=False,
        settling=0,
        queued=2,
        uploading=1,
        done=rows - 4,
        failed=1,
        retrying=0,
        watches=[
            WatchStatus(
                dir=watch,
                url="s3://releases/",
                delete=False,
                state="watching",
                note=None,
                last_scan=FROZEN_EPOCH - 60.0,
                reference_policy="rotate",
                write_mode="conditional writes honoured",
                decisions={"delta": rows - 4},
                files=rows,
                original=412_000_000,
                stored=21_000_000,
            )
        ],
        cache=CacheStats(hits=5, misses=3),
        bytes=ByteTotals(original=412_000_000, stored=21_000_000, saved=391_000_000),
        config="/home/me/.config/dg-agent/config.toml",
        checked=True,
        requests={"total": 0},
    )
    files = {
        f"app/app-1.{n}.zip": FakeFile(
            f"app/app-1.{n}.zip", bytes([n]) * (2000 + n), "delta", 40 + n
        )
        for n in range(4)
    }
    files["app/README.txt"] = FakeFile("app/README.txt", b"read me\n" * 10, "direct", 80)
    files["tools/cli-2.0.tar"] = FakeFile("tools/cli-2.0.tar", b"t" * 5000, "delta", 300)
    return FakeState(
        status=status,
        items=items,
        transfers=transfers,
        files=files,
        reference_sizes={"app": 2100, "tools": 4800},
    )
