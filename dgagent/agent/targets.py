"""The watches' targets: a Target per configured watch, and the start-time cleanup of their buckets.

Each watch gets its own DeltaStore, but S3 storages are built with ``shared_client``: watches on
one endpoint share a single boto3 client (each costs ~12 MB) and so its request counter. At
start, multipart uploads a killed agent left unfinished under a watch's prefix are aborted, as
S3 would otherwise keep (and bill) their parts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from dgagent.agent.config import AgentConfig
from dgagent.agent.workers import Target
from dgagent.client import open_store
from dgagent.engine.cache import ReferenceCache
from dgagent.errors import DgError
from dgagent.paths import folder_prefix
from dgagent.settings import EngineSettings
from dgagent.storage import S3Storage, parse_location

log = logging.getLogger(__name__)


def build_targets(
    config: AgentConfig, *, settings: EngineSettings, cache: ReferenceCache
) -> dict[str, Target]:
    """A Target for each configured watch, by watch name."""
    targets: dict[str, Target] = {}
    for watch in config.watches:
        location = parse_location(watch.url, config.s3.options(), shared_client=True)
        store = open_store(location.storage, settings=settings, cache=cache)
        targets[watch.name] = Target(watch, store, folder_prefix(location.key))
    return targets


def abort_orphan_uploads(targets: Iterable[Target], before: datetime) -> None:
    """Multipart uploads a killed agent left behind: everything started ``before`` this start."""
    for target in targets:
        storage = target.store.storage
        if not isinstance(storage, S3Storage):
            continue
        try:
            keys = storage.abort_stale_uploads(target.prefix, before)
        except DgError as exc:
            log.warning("could not look for unfinished uploads in %s: %s", target.watch.url, exc)
            continue
        if keys:
            log.info("aborted %d unfinished multipart uploads in %s", len(keys), target.watch.url)
