"""The agent's own API: what a client may ask of a running agent, as methods that take plain
values and return protocol records (dgagent.rpc.records).

The socket handlers (rpc.py) only check params and call these; nothing else reaches into the
daemon's parts. The domain's rules live here and in stored.py: which watch a folder name means,
what pausing one watch or all of them does, which watch owns a stored file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dgagent.agent import config as config_file
from dgagent.agent.config import Watch
from dgagent.agent.status import agent_status
from dgagent.agent.stored import StoredFiles
from dgagent.engine.prune import Retention
from dgagent.errors import ConfigError
from dgagent.rpc import records
from dgagent.rpc.protocol import EventType, NotFound
from dgagent.storage import list_buckets, parse_location

if TYPE_CHECKING:
    from dgagent.agent.daemon import Agent

QUEUE_STATES = ("queued", "uploading", "stored", "failed")


class AgentApi:
    """The façade over one running Agent."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self.stored = StoredFiles(
            s3=lambda: agent.config.s3.options(),  # noqa: PLW0108 (the config is reloaded)
            settings=agent.settings,
            cache=agent.cache,
            targets=agent.targets,
            index=lambda: agent.index,
        )

    # -- what it is doing ----------------------------------------------------------------------

    def status(self) -> records.Status:
        return agent_status(self._agent)

    def stats(self) -> records.Stats:
        status = self.status()
        return records.Stats(watches=status.watches, bytes=status.bytes, cache=status.cache)

    def watches(self) -> list[records.WatchStatus]:
        return self.status().watches

    def queue(self, state: str | None, offset: int, limit: int) -> records.QueuePage:
        index = self._agent.index
        rows = index.listing(state, offset, limit)
        return records.QueuePage([r.record() for r in rows], index.counts())

    def transfers(self, limit: int) -> records.Transfers:
        return records.Transfers(self._agent.index.recent(limit))

    # -- watches -------------------------------------------------------------------------------

    def watch_named(self, folder: str) -> str:
        """The watch a folder name means (``~`` and relative paths resolved); NotFound when
        that folder is not watched."""
        name = str(Path(folder).expanduser().resolve())
        if name not in self._agent.targets():
            raise NotFound(f"{name} is not watched")
        return name

    def add_watch(self, watch: Watch) -> None:
        parse_location(watch.url)  # validates the URL's form
        self._edit_config(lambda c: config_file.with_watch(c, watch))

    def remove_watch(self, folder: Path) -> None:
        self._edit_config(lambda c: config_file.without_watch(c, folder))

    def _edit_config(
        self, change: Callable[[config_file.AgentConfig], config_file.AgentConfig]
    ) -> None:
        path = self._agent.paths.config_file
        config_file.save(path, change(config_file.load(path)))
        self._agent.request_reload()

    # -- control -------------------------------------------------------------------------------

    def pause(self, watch: str | None) -> records.Paused:
        """Stop storing the files of ``watch`` (None: of every watch) until resume."""
        self._agent.pause(watch)
        self._agent.bus.publish(EventType.AGENT_PAUSED, records.PauseChanged(watch))
        return self._paused()

    def resume(self, watch: str | None) -> records.Paused:
        """Take work again; resuming everything also lifts each watch's own pause."""
        self._agent.resume(watch)
        self._agent.bus.publish(EventType.AGENT_RESUMED, records.PauseChanged(watch))
        return self._paused()

    def _paused(self) -> records.Paused:
        agent = self._agent
        return records.Paused(agent.paused_all or sorted(agent.paused_watches))

    def rescan(self, watch: str | None) -> None:
        self._agent.request_scan(watch)

    def retry(self, watch: str, path: str) -> records.ItemRef:
        """Queue one failed (or waiting) file again now."""
        return self._item(watch, path, self._agent.index.retry)

    def retry_failed(self, watch: str | None) -> records.Retried:
        """Queue every failed file of ``watch`` (None: of all) again."""
        count = self._agent.index.retry_failed(watch)
        self._agent.workers.wake()
        return records.Retried(count)

    def cancel(self, watch: str, path: str) -> records.ItemRef:
        """Drop a pending operation."""
        return self._item(watch, path, self._agent.index.cancel)

    def _item(self, watch: str, path: str, action: Callable[[str, str], bool]) -> records.ItemRef:
        if not action(watch, path):
            raise NotFound(f"{path} has no pending or failed operation in {watch}")
        self._agent.workers.wake()
        return records.ItemRef(watch, path)

    def reload(self) -> None:
        self._agent.request_reload()

    def shutdown(self) -> None:
        self._agent.stop()

    # -- stored files --------------------------------------------------------------------------

    def stores(self) -> records.Stores:
        """The roots of the watched URLs, and the buckets the credentials can list."""
        agent = self._agent
        roots = {parse_location(t.watch.url).storage.url for t in agent.targets().values()}
        buckets: list[str] = []
        error = None
        if any(r.startswith("s3://") for r in roots) or agent.config.s3.endpoint_url:
            try:
                buckets = [f"s3://{b}" for b in list_buckets(agent.config.s3.options())]
            except ConfigError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 (listing buckets is optional here)
                error = str(exc)
        return records.Stores(sorted(roots | set(buckets)), error)

    def listing(self, url: str, *, recursive: bool, offset: int, limit: int) -> records.Listing:
        return self.stored.listing(url, recursive=recursive, offset=offset, limit=limit)

    def verify(self, url: str) -> records.Verified:
        return self.stored.verify(url)

    def download(self, url: str, dest: Path) -> records.Written:
        return self.stored.download(url, dest)

    def restore(self, url: str) -> records.Written:
        """Write a stored file back into the watched folder it came from."""
        return self.stored.restore(url)

    def prune(self, url: str, retention: Retention, *, dryrun: bool) -> records.Pruned:
        """Prune a stored folder and those under it by ``retention`` (engine/prune.py)."""
        done = self.stored.prune(url, retention, dryrun=dryrun)
        if not dryrun:
            finished = records.PruneFinished(
                done.url, None, len(done.deleted), len(done.references_deleted), done.freed
            )
            self._agent.bus.publish(EventType.PRUNE_FINISHED, finished)
        return done

    def delete(self, url: str) -> records.Deleted:
        return self.stored.delete(
            url, rescan=lambda watch: self._agent.request_scan(watch, delay=1.0)
        )
