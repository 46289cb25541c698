"""The agent's status: the record (rpc.records.Status) the socket API's ``status`` call
returns (``stats`` and ``watches.list`` return parts of it).

Gathered from every part of the running agent (index counts and totals, watcher states, the
pipeline, the pause, the cache and the S3 request counters) at the moment it is asked for, so
it is assembled here, in one place, rather than kept up to date as the parts change.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import TYPE_CHECKING

from dgagent.rpc.records import ByteTotals, CacheStats, Status, WatchStatus
from dgagent.version import __version__

if TYPE_CHECKING:
    from dgagent.agent.daemon import Agent


def agent_status(agent: Agent) -> Status:
    counts = agent.index.counts()
    totals = agent.index.totals()
    decisions = agent.index.decisions()
    watches = []
    for name, target in agent.targets().items():
        t = totals.get(name, {"files": 0, "original": 0, "stored": 0})
        watches.append(
            WatchStatus(
                dir=name,
                url=target.watch.url,
                delete=target.watch.delete,
                state="paused" if name in agent.paused() else agent.watcher.states.get(name, "?"),
                note=agent.notes.get(name),
                last_scan=agent.pipeline.last_scan.get(name),
                reference_policy=target.watch.reference_policy or agent.settings.reference_policy,
                write_mode=target.store.storage.write_mode(),
                decisions=decisions.get(name, {}),
                files=t["files"],
                original=t["original"],
                stored=t["stored"],
            )
        )
    requests: Counter[str] = Counter()
    # Buckets on one endpoint share a client, and so its counter: count each counter once.
    counters = {
        id(c): c
        for t in agent.targets().values()
        if (c := getattr(t.store.storage, "requests", None)) is not None
    }
    for counter in counters.values():
        requests.update(counter)
    original = sum(t["original"] for t in totals.values())
    stored = sum(t["stored"] for t in totals.values())
    return Status(
        pid=os.getpid(),
        version=__version__,
        started=agent.started,
        uptime=round(time.time() - agent.started, 1),
        idle=agent.idle(),
        paused=agent.paused_all or agent.disk.reason is not None,
        disk_full=agent.disk.reason,
        scanning=agent.pipeline.scanning,
        settling=len(agent.pipeline.settler),
        queued=counts.get("queued", 0),
        uploading=counts.get("uploading", 0),
        done=counts.get("stored", 0),
        failed=counts.get("failed", 0),
        retrying=agent.index.retrying(),
        watches=watches,
        cache=CacheStats(hits=agent.cache.hits, misses=agent.cache.misses),
        bytes=ByteTotals(original=original, stored=stored, saved=original - stored),
        config=str(agent.paths.config_file),
        checked=agent.stores_checked,
        requests={"total": sum(requests.values()), **requests},
        problems=[p.record() for p in agent.problems()],
    )
