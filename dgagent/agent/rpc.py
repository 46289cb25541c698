"""The socket API's methods: each checks its params and calls the agent's API (api.py).

Handlers run in the server's thread pool, so slow ones (verify, restore) do not stall the others.
The protocol (names, errors, records) is dgagent.rpc, documented in docs/agent-api.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgagent.agent.api import QUEUE_STATES, AgentApi
from dgagent.agent.config import Watch
from dgagent.engine.prune import Retention, parse_duration
from dgagent.errors import ConfigError
from dgagent.rpc.jsonrpc import Handler
from dgagent.rpc.protocol import InvalidParams, Method

if TYPE_CHECKING:
    from dgagent.agent.daemon import Agent


def _str(params: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = params.get(name, default)
    if not isinstance(value, str) or not value:
        raise InvalidParams(f"param {name!r} must be a non-empty string")
    return value


def _int(params: Mapping[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidParams(f"param {name!r} must be a non-negative integer")
    return value


def serve(agent: Agent) -> int:
    """Run ``agent`` with the socket API (what ``dg-agent run`` does); the exit code."""
    return agent.run(handlers(AgentApi(agent)))


def handlers(api: AgentApi) -> dict[str, Handler]:
    def watch_param(params: Mapping[str, Any]) -> str | None:
        return None if params.get("watch") is None else api.watch_named(_str(params, "watch"))

    def required_watch(params: Mapping[str, Any]) -> str:
        watch = watch_param(params)
        if watch is None:
            raise InvalidParams("param 'watch' is required")
        return watch

    def queue(params: dict[str, Any]) -> Any:
        state = params.get("state")
        if state is not None and state not in QUEUE_STATES:
            raise InvalidParams("state must be queued, uploading, stored or failed")
        return api.queue(state, _int(params, "offset", 0), _int(params, "limit", 100))

    def watches_add(params: dict[str, Any]) -> Any:
        folder = Path(_str(params, "dir")).expanduser().resolve()
        exclude = params.get("exclude", [])
        if not isinstance(exclude, list) or not all(isinstance(p, str) for p in exclude):
            raise InvalidParams("param 'exclude' must be a list of strings")
        ratio = params.get("max_ratio")
        if ratio is not None and (not isinstance(ratio, int | float) or not 0 <= ratio <= 1):
            raise InvalidParams("param 'max_ratio' must be a number in [0, 1]")
        url = _str(params, "url")
        api.add_watch(Watch(folder, url, bool(params.get("delete", False)), tuple(exclude), ratio))
        return {"dir": str(folder), "url": url}

    def watches_remove(params: dict[str, Any]) -> Any:
        folder = Path(_str(params, "dir")).expanduser().resolve()
        api.remove_watch(folder)
        return {"dir": str(folder)}

    def rescan(params: dict[str, Any]) -> Any:
        api.rescan(watch_param(params))
        return {"requested": True}

    def retry(params: dict[str, Any]) -> Any:
        """One file (``watch`` and ``path``), or every failed file of a watch or of all."""
        if "path" in params:
            return api.retry(required_watch(params), _str(params, "path"))
        return api.retry_failed(watch_param(params))

    def browse_list(params: dict[str, Any]) -> Any:
        return api.listing(
            _str(params, "url"),
            recursive=bool(params.get("recursive", False)),
            offset=_int(params, "offset", 0),
            limit=_int(params, "limit", 1000),
        )

    def prune(params: dict[str, Any]) -> Any:
        keep_last = params.get("keep_last")
        if keep_last is not None and (
            not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 1
        ):
            raise InvalidParams("param 'keep_last' must be an integer of at least 1")
        older_than = params.get("older_than")
        if older_than is not None and not isinstance(older_than, str):
            raise InvalidParams("param 'older_than' must be a duration such as \"90d\"")
        try:
            seconds = parse_duration(older_than) if older_than is not None else None
            retention = Retention(keep_last=keep_last, older_than=seconds)
        except ConfigError as exc:
            raise InvalidParams(str(exc)) from exc
        return api.prune(_str(params, "url"), retention, dryrun=bool(params.get("dryrun", False)))

    def download(params: dict[str, Any]) -> Any:
        return api.download(_str(params, "url"), Path(_str(params, "dest")).expanduser())

    def shutdown(params: dict[str, Any]) -> Any:
        api.shutdown()
        return {"stopping": True, "at": time.time()}

    def reload(params: dict[str, Any]) -> Any:
        api.reload()
        return {"reloading": True}

    def url_call(action: Callable[[str], Any]) -> Handler:
        return lambda params: action(_str(params, "url"))

    table: dict[Method, Handler] = {
        Method.STATUS: lambda p: api.status(),
        Method.QUEUE: queue,
        Method.TRANSFERS: lambda p: api.transfers(_int(p, "limit", 100)),
        Method.STATS: lambda p: api.stats(),
        Method.WATCHES_LIST: lambda p: {"watches": [w.to_json() for w in api.watches()]},
        Method.WATCHES_ADD: watches_add,
        Method.WATCHES_REMOVE: watches_remove,
        Method.PAUSE: lambda p: api.pause(watch_param(p)),
        Method.RESUME: lambda p: api.resume(watch_param(p)),
        Method.RESCAN: rescan,
        Method.RETRY: retry,
        Method.CANCEL: lambda p: api.cancel(required_watch(p), _str(p, "path")),
        Method.BROWSE_BUCKETS: lambda p: api.stores(),
        Method.BROWSE_LIST: browse_list,
        Method.VERIFY: url_call(api.verify),
        Method.DOWNLOAD: download,
        Method.RESTORE: url_call(api.restore),
        Method.DELETE: url_call(api.delete),
        Method.PRUNE: prune,
        Method.SHUTDOWN: shutdown,
        Method.CONFIG_RELOAD: reload,
    }
    return {str(method): handler for method, handler in table.items()}
