"""The socket API's methods: what the TUI and the CLI can ask of a running agent.

Each handler takes the request's params (a dict) and returns something JSON can carry. Handlers
run in the server's thread pool, so slow ones (verify, restore) do not stall the others. The
protocol is documented in docs/agent-api.md.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgagent.agent import config as config_file
from dgagent.agent.config import Watch
from dgagent.agent.server import RpcError
from dgagent.client import open_store
from dgagent.engine import keys
from dgagent.engine.catalog import Listing
from dgagent.engine.store import DeltaStore, Entry
from dgagent.errors import ConfigError
from dgagent.paths import folder_prefix, local_path_for
from dgagent.storage import Prefix, list_buckets, parse_location

if TYPE_CHECKING:
    from dgagent.agent.daemon import Agent

Handler = Callable[[dict[str, Any]], Any]
INVALID_PARAMS = -32602


def _str(params: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = params.get(name, default)
    if not isinstance(value, str) or not value:
        raise RpcError(INVALID_PARAMS, f"param {name!r} must be a non-empty string")
    return value


def _int(params: Mapping[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RpcError(INVALID_PARAMS, f"param {name!r} must be a non-negative integer")
    return value


def entry_record(entry: Entry) -> dict[str, Any]:
    original = entry.original_size
    meta = entry.meta
    return {
        "key": entry.key,
        "name": posixpath.basename(entry.key),
        "stored_key": entry.stored_key,
        "kind": entry.kind.value if entry.kind else None,
        "stored_as": entry.stored_as,
        "codec": entry.codec,
        "original_size": original,
        "stored_size": entry.stored_size,
        "ratio": entry.stored_size / original if original else None,
        "sha256": meta.file_sha256 if meta else None,
        "tool": meta.tool if meta else None,
        "last_modified": entry.info.last_modified.isoformat(),
        "why": entry.why,
        "reference": entry.reference,
    }


def handlers(agent: Agent) -> dict[str, Handler]:  # noqa: PLR0915 (one table of small closures)
    stores: dict[str, DeltaStore] = {}

    def store_for(url: str) -> tuple[DeltaStore, str]:
        location = parse_location(url, agent.config.s3.options())
        root = location.storage.url
        if root not in stores:
            stores[root] = open_store(location.storage, settings=agent.settings, cache=agent.cache)
        return stores[root], location.key

    def watch_param(params: Mapping[str, Any]) -> str | None:
        raw = params.get("watch")
        if raw is None:
            return None
        name = str(Path(_str(params, "watch")).expanduser().resolve())
        if name not in agent.targets():
            raise RpcError(-32003, f"{name} is not watched")
        return name

    def status(params: dict[str, Any]) -> Any:
        return agent.status()

    def queue(params: dict[str, Any]) -> Any:
        state = params.get("state")
        if state is not None and state not in ("queued", "uploading", "stored", "failed"):
            raise RpcError(INVALID_PARAMS, "state must be queued, uploading, stored or failed")
        rows = agent.index.listing(state, _int(params, "offset", 0), _int(params, "limit", 100))
        return {"items": [r.record() for r in rows], "counts": agent.index.counts()}

    def transfers(params: dict[str, Any]) -> Any:
        items = agent.index.recent(_int(params, "limit", 100))
        for item in items:
            original, stored = item.get("original_size"), item.get("stored_size")
            item["ratio"] = stored / original if original and stored is not None else None
        return {"items": items}

    def stats(params: dict[str, Any]) -> Any:
        status = agent.status()
        return {"watches": status["watches"], "bytes": status["bytes"], "cache": status["cache"]}

    def watches_list(params: dict[str, Any]) -> Any:
        return {"watches": agent.status()["watches"]}

    def edit_config(change: Callable[[config_file.AgentConfig], config_file.AgentConfig]) -> None:
        current = config_file.load(agent.paths.config_file)
        config_file.save(agent.paths.config_file, change(current))
        agent.request_reload()

    def watches_add(params: dict[str, Any]) -> Any:
        folder = Path(_str(params, "dir")).expanduser().resolve()
        exclude = params.get("exclude", [])
        if not isinstance(exclude, list) or not all(isinstance(p, str) for p in exclude):
            raise RpcError(INVALID_PARAMS, "param 'exclude' must be a list of strings")
        ratio = params.get("max_ratio")
        if ratio is not None and (not isinstance(ratio, int | float) or not 0 <= ratio <= 1):
            raise RpcError(INVALID_PARAMS, "param 'max_ratio' must be a number in [0, 1]")
        url = _str(params, "url")
        parse_location(url)  # validates the URL's form
        watch = Watch(folder, url, bool(params.get("delete", False)), tuple(exclude), ratio)
        edit_config(lambda c: config_file.with_watch(c, watch))
        return {"dir": str(folder), "url": url}

    def watches_remove(params: dict[str, Any]) -> Any:
        folder = Path(_str(params, "dir")).expanduser().resolve()
        edit_config(lambda c: config_file.without_watch(c, folder))
        return {"dir": str(folder)}

    def pause(params: dict[str, Any]) -> Any:
        name = watch_param(params)
        if name is None:
            agent.paused_all = True
        else:
            agent.paused_watches.add(name)
        agent.bus.publish("agent.paused", {"watch": name})
        return {"paused": agent.paused_all or sorted(agent.paused_watches)}

    def resume(params: dict[str, Any]) -> Any:
        name = watch_param(params)
        if name is None:
            agent.paused_all = False
            agent.paused_watches.clear()
        else:
            agent.paused_watches.discard(name)
        agent.workers.wake()
        agent.bus.publish("agent.resumed", {"watch": name})
        return {"paused": agent.paused_all or sorted(agent.paused_watches)}

    def rescan(params: dict[str, Any]) -> Any:
        agent.request_scan(watch_param(params))
        return {"requested": True}

    def item(params: dict[str, Any], action: Callable[[str, str], bool]) -> Any:
        watch = watch_param(params)
        if watch is None:
            raise RpcError(INVALID_PARAMS, "param 'watch' is required")
        path = _str(params, "path")
        if not action(watch, path):
            raise RpcError(-32003, f"{path} has no pending or failed operation in {watch}")
        agent.workers.wake()
        return {"watch": watch, "path": path}

    def retry(params: dict[str, Any]) -> Any:
        """One file (``watch`` and ``path``), or every failed file of a watch or of all."""
        if "path" in params:
            return item(params, agent.index.retry)
        count = agent.index.retry_failed(watch_param(params))
        agent.workers.wake()
        return {"retried": count}

    def browse_buckets(params: dict[str, Any]) -> Any:
        roots = sorted({parse_location(t.watch.url).storage.url for t in agent.targets().values()})
        buckets: list[str] = []
        error = None
        if any(r.startswith("s3://") for r in roots) or agent.config.s3.endpoint_url:
            try:
                buckets = [f"s3://{b}" for b in list_buckets(agent.config.s3.options())]
            except ConfigError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 (listing buckets is optional here)
                error = str(exc)
        return {"stores": sorted(set(roots) | set(buckets)), "error": error}

    def browse_list(params: dict[str, Any]) -> Any:
        store, key = store_for(_str(params, "url"))
        recursive = bool(params.get("recursive", False))
        prefix = folder_prefix(key)
        offset, limit = _int(params, "offset", 0), _int(params, "limit", 1000)
        found = store.listing(prefix, recursive=recursive, details=False)
        rows = found.rows
        page = rows[offset : offset + limit]
        # This page's metadata is read (HEADs where the cache has none); the other pages' only
        # from the cache, so that a first look at a huge folder costs one page of HEADs. The
        # summary then covers the whole folder as far as it is known, and says so.
        shown = {e.key for e in page if isinstance(e, Entry)}
        detailed = {
            e.key: e for e in store.with_details([e for e in found.files if e.key in shown])
        }
        rest = store.with_details([e for e in found.files if e.key not in shown], cached_only=True)
        summary = Listing([*detailed.values(), *rest], found.objects).summary()
        refs = [o for o in found.objects if keys.is_reference(o.key)]
        return {
            "url": f"{store.storage.url}/{prefix}",
            "prefixes": [r.key for r in page if isinstance(r, Prefix)],
            "files": [entry_record(detailed[e.key]) for e in page if isinstance(e, Entry)],
            "reference_size": sum(r.size for r in refs) if refs else None,
            "summary": summary.record(),
            "total": len(rows),
            "offset": offset,
        }

    def verify(params: dict[str, Any]) -> Any:
        store, key = store_for(_str(params, "url"))
        got = store.verify(key)
        return {
            "url": store.url(got.key),
            "valid": True,
            "sha256": got.sha256,
            "size": got.size,
            "kind": got.kind.value,
        }

    def write_out(store: DeltaStore, key: str, dest: Path) -> dict[str, Any]:
        dest.parent.mkdir(parents=True, exist_ok=True)
        got = store.get(key, dest)
        mtime = got.meta.mtime
        if mtime is not None:
            os.utime(dest, (mtime, mtime))
        return {
            "url": store.url(got.key),
            "dest": str(dest),
            "sha256": got.sha256,
            "size": got.size,
            "kind": got.kind.value,
        }

    def download(params: dict[str, Any]) -> Any:
        store, key = store_for(_str(params, "url"))
        dest = Path(_str(params, "dest")).expanduser()
        if dest.is_dir():
            dest = dest / posixpath.basename(keys.logical_key(key))
        return write_out(store, key, dest.resolve())

    def restore(params: dict[str, Any]) -> Any:
        url = _str(params, "url")
        store, key = store_for(url)
        for target in agent.targets().values():
            if target.store.storage.url == store.storage.url and key.startswith(target.prefix):
                relative = keys.logical_key(key)[len(target.prefix) :]
                return write_out(store, key, local_path_for(target.watch.dir, relative))
        raise RpcError(-32003, f"{url} is not under a watched folder's URL; use download")

    def delete(params: dict[str, Any]) -> Any:
        store, key = store_for(_str(params, "url"))
        deleted = store.delete([key])
        warning = None
        for target in agent.targets().values():
            if target.store.storage.url == store.storage.url and key.startswith(target.prefix):
                relative = keys.logical_key(key)[len(target.prefix) :]
                agent.index.forget(target.watch.name, relative)
                if (target.watch.dir / relative).exists():
                    warning = "the file still exists in the watched folder and will be stored again"
                    agent.request_scan(target.watch.name, delay=1.0)
        return {"deleted": [store.url(k) for k in deleted], "warning": warning}

    def shutdown(params: dict[str, Any]) -> Any:
        agent.stop()
        return {"stopping": True, "at": time.time()}

    def reload(params: dict[str, Any]) -> Any:
        agent.request_reload()
        return {"reloading": True}

    return {
        "status": status,
        "queue": queue,
        "transfers": transfers,
        "stats": stats,
        "watches.list": watches_list,
        "watches.add": watches_add,
        "watches.remove": watches_remove,
        "pause": pause,
        "resume": resume,
        "rescan": rescan,
        "retry": retry,
        "cancel": lambda p: item(p, agent.index.cancel),
        "browse.buckets": browse_buckets,
        "browse.list": browse_list,
        "verify": verify,
        "download": download,
        "restore": restore,
        "delete": delete,
        "shutdown": shutdown,
        "config.reload": reload,
    }
