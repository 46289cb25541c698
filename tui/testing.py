"""A fake agent for tests and demos: the real socket server, scripted state and events.

It reuses the agent's own protocol implementation (``RpcServer`` and ``EventBus``) with
handlers that answer from plain dicts, so the TUI is tested against the exact wire format over a
real Unix socket, without S3 or files being stored. It can stop and start again on the same
path, to exercise reconnects.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgagent.agent.client import NOT_FOUND
from dgagent.agent.events import Event, EventBus
from dgagent.agent.server import RpcError, RpcServer

FROZEN_TIME = "2026-11-25T10:00:00.000Z"
FROZEN_EPOCH = 1_795_600_000.0


class FrozenBus(EventBus):
    """An EventBus whose events all carry one fixed time, so screenshots do not change."""

    def publish(self, type: str, data: Any) -> Event:
        with self._lock:
            self._seq += 1
            event = Event(self._seq, FROZEN_TIME, type, dict(data))
            self._buffer.append(event)
            callbacks = self._callbacks
        for callback in callbacks:
            callback(event)
        return event


@dataclass
class FakeFile:
    key: str
    content: bytes
    kind: str = "delta"
    stored_size: int = 0
    codec: str | None = None

    def record(self) -> dict[str, Any]:
        original = len(self.content)
        return {
            "key": self.key,
            "name": self.key.rsplit("/", 1)[-1],
            "kind": self.kind,
            "stored_as": "delta" if self.kind == "delta" else "whole",
            "codec": self.codec,
            "original_size": original,
            "stored_size": self.stored_size,
            "ratio": self.stored_size / original if original else None,
            "sha256": hashlib.sha256(self.content).hexdigest(),
            "last_modified": "2026-11-25T09:00:00+00:00",
        }


@dataclass
class FakeState:
    """What the fake agent reports; tests edit it freely (under ``lock``)."""

    status: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    root: str = "s3://releases"
    files: dict[str, FakeFile] = field(default_factory=dict)  # key → file
    reference_sizes: dict[str, int] = field(default_factory=dict)  # DeltaSpace prefix → size
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # ``status``'s "problems" ({"watch", "problem", "fix"} each); None leaves the field out, as
    # an agent from before it does
    problems: list[dict[str, Any]] | None = None


class FakeAgent:
    """Serve ``state`` on ``socket_path`` until stopped; ``publish`` pushes events."""

    def __init__(
        self, socket_path: Path, state: FakeState | None = None, *, history: int = 1000
    ) -> None:
        self.socket_path = Path(socket_path)
        self.state = state or demo_state()
        self.bus = FrozenBus(history)  # events kept for replay, as the agent keeps 1,000
        self._server: RpcServer | None = None

    def start(self) -> None:
        info = {"agent": "0.1.0-fake", "pid": 4242, "started": FROZEN_EPOCH}
        self._server = RpcServer(self.socket_path, self._handlers(), self.bus, info=info)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def publish(self, type: str, **data: Any) -> None:
        self.bus.publish(type, data)

    def seed_events(self) -> None:
        """A short, fixed history for the activity log."""
        watch = "/home/me/builds"
        self.publish("agent.started", pid=4242, watches=[watch])
        self.publish("scan.started", watch=watch)
        for n in range(3):
            path = f"app/app-1.{n}.zip"
            self.publish("file.queued", watch=watch, path=path, size=48_000_000)
            self.publish("file.uploading", watch=watch, path=path, size=48_000_000)
            self.publish(
                "file.stored",
                watch=watch,
                path=path,
                key=path,
                kind="delta",
                original_size=48_000_000,
                stored_size=310_000 + n,
                ratio=(310_000 + n) / 48_000_000,
                cache_hit=n > 0,
                seconds=1.5,
            )
        self.publish(
            "file.retry",
            watch=watch,
            path="app/app-1.11.zip",
            error="SlowDown",
            attempt=1,
            delay=2.0,
        )
        self.publish("file.failed", watch=watch, path="app/app-1.11.zip", error="SlowDown")
        self.publish(
            "scan.finished",
            watch=watch,
            files=12,
            changed=3,
            deletes=0,
            errors=0,
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
                raise RpcError(NOT_FOUND, f"{url} is not in {s.root}")
            return url[len(s.root) + 1 :]

        def file_of(params: dict[str, Any]) -> FakeFile:
            key = key_of(str(params.get("url", "")))
            if key not in s.files:
                raise RpcError(-32000, f"{params.get('url')} does not exist")
            return s.files[key]

        def queue(p: dict[str, Any]) -> Any:
            record("queue", p)
            state = p.get("state")
            items = [i for i in s.items if state is None or i["state"] == state]
            offset, limit = int(p.get("offset", 0)), int(p.get("limit", 100))
            return {"items": items[offset : offset + limit], "counts": {}}

        def browse_list(p: dict[str, Any]) -> Any:
            record("browse.list", p)
            prefix = key_of(str(p["url"]).rstrip("/") + "/") if p["url"] != s.root else ""
            children: set[str] = set()
            files = []
            for key in sorted(s.files):
                if not key.startswith(prefix):
                    continue
                rest = key[len(prefix) :]
                if "/" in rest:
                    children.add(prefix + rest.split("/", 1)[0] + "/")
                else:
                    files.append(s.files[key].record())
            rows: list[Any] = sorted(children) + files
            offset, limit = int(p.get("offset", 0)), int(p.get("limit", 1000))
            page = rows[offset : offset + limit]
            reference = s.reference_sizes.get(prefix.rstrip("/"))
            summary = {
                "files": len(files),
                "original_bytes": sum(f["original_size"] for f in files),
                "stored_bytes": sum(f["stored_size"] for f in files) + (reference or 0),
            }
            return {
                "url": f"{s.root}/{prefix}",
                "prefixes": [r for r in page if isinstance(r, str)],
                "files": [r for r in page if isinstance(r, dict)],
                "reference_size": reference,
                "summary": summary,
                "total": len(rows),
                "offset": offset,
            }

        def download(p: dict[str, Any]) -> Any:
            record("download", p)
            f = file_of(p)
            dest = Path(str(p["dest"])).expanduser()
            if dest.is_dir():
                dest = dest / f.key.rsplit("/", 1)[-1]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(f.content)
            sha = hashlib.sha256(f.content).hexdigest()
            return {"dest": str(dest), "sha256": sha, "size": len(f.content)}

        def verify(p: dict[str, Any]) -> Any:
            record("verify", p)
            f = file_of(p)
            sha = hashlib.sha256(f.content).hexdigest()
            return {"url": p["url"], "valid": True, "sha256": sha, "size": len(f.content)}

        def delete(p: dict[str, Any]) -> Any:
            record("delete", p)
            f = file_of(p)
            with s.lock:
                del s.files[f.key]
            return {"deleted": [p["url"]], "warning": None}

        def status(p: dict[str, Any]) -> Any:
            with s.lock:
                problems = None if s.problems is None else [dict(x) for x in s.problems]
                return dict(s.status) | ({} if problems is None else {"problems": problems})

        def simple(name: str, result: Any) -> Any:
            def handler(p: dict[str, Any]) -> Any:
                record(name, p)
                return result

            return handler

        return {
            "status": status,
            "queue": queue,
            "transfers": lambda p: {"items": list(s.transfers)},
            "browse.buckets": lambda p: {"stores": [s.root], "error": None},
            "browse.list": browse_list,
            "download": download,
            "verify": verify,
            "restore": simple("restore", {"dest": "(the watched folder)"}),
            "delete": delete,
            "pause": simple("pause", {"paused": True}),
            "resume": simple("resume", {"paused": False}),
            "rescan": simple("rescan", {"requested": True}),
            "retry": simple("retry", {}),
            "cancel": simple("cancel", {}),
        }


def demo_problems(watch: str = "/home/me/builds") -> list[dict[str, Any]]:
    """Problems of the kinds the agent reports, for tests and screenshots."""
    return [
        {
            "watch": None,
            "problem": "xdelta3 was not found on PATH",
            "fix": "install xdelta3, then: dg-agent stop && dg-agent start",
        },
        {
            "watch": watch,
            "problem": f"1 file failed in {watch}; the last error: SlowDown",
            "fix": f"fix the cause, then: dg-agent retry {watch}",
        },
    ]


def demo_state(rows: int = 12) -> FakeState:
    """A fixed, plausible agent: a few files in every state and a store to browse."""
    watch = "/home/me/builds"
    items: list[dict[str, Any]] = []
    transfers: list[dict[str, Any]] = []
    for n in range(rows):
        original = 48_000_000 + n * 1_250_000
        stored = 310_000 + (n * 7919) % 200_000
        state = (
            "stored" if n < rows - 4 else ("uploading", "queued", "queued", "failed")[n - rows + 4]
        )
        done = state == "stored"
        items.append(
            {
                "watch": watch,
                "path": f"app/app-1.{n}.zip",
                "state": state,
                "op": "put",
                "key": f"app/app-1.{n}.zip" if done else None,
                "kind": ("reference" if n == 0 else "delta") if done else None,
                "original_size": original,
                "stored_size": stored if done else None,
                "cache_hit": n % 3 != 0 if done else None,
                "attempts": 3 if state == "failed" else 0,
                "error": "SlowDown: reduce your request rate" if state == "failed" else None,
                "updated": FROZEN_EPOCH - 60 * (rows - n),
            }
        )
        if done:
            transfers.append(
                {
                    "time": FROZEN_EPOCH - 4 * (rows - n),
                    "watch": watch,
                    "path": f"app/app-1.{n}.zip",
                    "op": "put",
                    "original_size": original,
                    "stored_size": stored,
                    "seconds": 1.5,
                    "error": None,
                }
            )
    status = {
        "pid": 4242,
        "version": "0.1.0-fake",
        "uptime": 3600.0,
        "idle": False,
        "paused": False,
        "scanning": False,
        "settling": 0,
        "queued": 2,
        "uploading": 1,
        "done": rows - 4,
        "failed": 1,
        "watches": [{"dir": watch, "url": "s3://releases/", "state": "watching", "files": rows}],
        "cache": {"hits": 5, "misses": 3},
        "bytes": {"original": 412_000_000, "stored": 21_000_000, "saved": 391_000_000},
    }
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
