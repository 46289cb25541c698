"""A watch's retention (``keep_last``/``older_than`` in its config), applied by the agent.

The agent prunes a watch's URL after its reconcile scan, on the same schedule, with the engine's
Pruner (engine/prune.py): each release line keeps its newest versions by the rule, the rest go,
and references holding space for nothing are given back. A version whose file is still in the
watched folder is never deleted unless the watch says ``prune_present = true``: retention is for
what the build folder no longer has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dgagent.agent.config import Watch
from dgagent.engine.prune import Pruner, PruneReport
from dgagent.engine.store import DeltaStore
from dgagent.errors import DgError
from dgagent.paths import local_path_for

log = logging.getLogger(__name__)


def still_in_folder(watch: Watch, prefix: str) -> Callable[[str], bool]:
    """Whether a stored logical key's file is still in the watched folder (a key that does not
    map into the folder counts as present: when unsure, keep it)."""

    def present(key: str) -> bool:
        if not key.startswith(prefix):
            return True
        try:
            return local_path_for(watch.dir, key[len(prefix) :]).exists()
        except DgError:
            return True

    return present


def prune_watch(
    watch: Watch,
    store: DeltaStore,
    prefix: str,
    *,
    declined: set[tuple[str, ...]] | None = None,
) -> PruneReport | None:
    """Apply the watch's retention under ``prefix``; None when it has none. ``declined``: the
    retirements earlier runs found not worth it (Pruner), kept by the caller between runs."""
    retention = watch.retention
    if retention is None:
        return None
    protect = None if watch.prune_present else still_in_folder(watch, prefix)
    pruner = Pruner(store, retention, protect=protect, declined=declined)
    report = pruner.run(prefix, recursive=True)
    if report.deleted or report.references:
        log.info(
            "%s: retention (%s) deleted %d versions and %d references, %d bytes back",
            watch.dir,
            retention.describe(),
            len(report.deleted),
            len(report.references),
            report.freed,
        )
    return report
