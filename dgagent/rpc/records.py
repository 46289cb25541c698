"""What travels in the agent's answers and events, as typed records with one encoder and one
decoder each (:class:`Record`): the agent builds them, the CLI and the TUI read them back, and the
TUI's fake agent builds the same ones, so a field added in one place shows up everywhere or fails
type checking.

The decoding rules are record.py's; this module only declares, as the one schema of the
protocol, what each answer and event carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dgagent.rpc.protocol import EventType
from dgagent.rpc.record import Record, check, ratio

__all__ = [
    "EVENT_DATA",
    "AgentError",
    "AgentStarted",
    "BrowseEntry",
    "ByteTotals",
    "CacheStats",
    "DeleteRefused",
    "Deleted",
    "Event",
    "FileDeleted",
    "FileFailed",
    "FileRetry",
    "FileSeen",
    "FileStored",
    "Hello",
    "ItemRef",
    "Listing",
    "Nothing",
    "PauseChanged",
    "Paused",
    "Problem",
    "Progress",
    "PruneFinished",
    "Pruned",
    "QueueItem",
    "QueuePage",
    "Record",
    "Retried",
    "ScanFinished",
    "ScanStarted",
    "Stats",
    "Status",
    "Stores",
    "Summary",
    "Transfer",
    "Transfers",
    "Verified",
    "WatchNames",
    "WatchStatus",
    "Written",
    "dropped",
    "event_data",
    "ratio",
]

# -- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem(Record):
    """A state the user must act on, with the command that fixes it."""

    watch: str | None  # None: the agent as a whole
    problem: str
    fix: str


@dataclass(frozen=True)
class WatchStatus(Record):
    """One watched folder in ``status``, ``stats`` and ``watches.list``."""

    dir: str
    url: str
    delete: bool
    state: str  # watching, missing, paused … (the watcher's word)
    note: str | None  # the last permanent error or refused delete
    last_scan: float | None
    reference_policy: str
    write_mode: str
    decisions: dict[str, int]  # stored files by how they went: delta, new reference, whole
    files: int
    original: int
    stored: int


@dataclass(frozen=True)
class CacheStats(Record):
    """The reference cache's hits and misses since the agent started."""

    hits: int
    misses: int


@dataclass(frozen=True)
class ByteTotals(Record):
    """Bytes of the stored files: their original size, what they take, the difference."""

    original: int
    stored: int
    saved: int


@dataclass(frozen=True)
class Status(Record):
    """The answer to ``status``: what the agent is doing, gathered when asked."""

    pid: int
    version: str
    started: float
    uptime: float
    idle: bool
    paused: bool
    disk_full: str | None
    scanning: bool
    settling: int
    queued: int
    uploading: int
    done: int
    failed: int
    retrying: int
    watches: list[WatchStatus]
    cache: CacheStats
    bytes: ByteTotals
    config: str
    checked: bool  # each watch's store checked once since start
    requests: dict[str, int]  # S3 requests by operation, and their ``total``
    problems: list[Problem] = field(default_factory=list)  # absent from agents before it


@dataclass(frozen=True)
class Stats(Record):
    """The answer to ``stats``: the parts of ``status`` about sizes."""

    watches: list[WatchStatus]
    bytes: ByteTotals
    cache: CacheStats


@dataclass(frozen=True)
class Hello(Record):
    """The answer to ``hello``: which agent answers, and its protocol version."""

    agent: str  # the agent's version
    pid: int
    started: float
    instance: str  # one per agent process
    protocol: int


# -- the queue and its history -------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem(Record):
    """One tracked file in ``queue``: its pending operation, or how it was stored."""

    watch: str
    path: str
    state: str  # queued, uploading, stored, failed
    op: str | None  # put, delete
    key: str | None
    kind: str | None  # reference, delta, direct
    codec: str | None
    original_size: int | None
    stored_size: int | None
    ratio: float | None
    cache_hit: bool | None
    attempts: int
    next_attempt: float | None
    error: str | None
    updated: float
    why: str | None


@dataclass(frozen=True)
class QueuePage(Record):
    """The answer to ``queue``: one page of files, and the count in each state."""

    items: list[QueueItem]
    counts: dict[str, int]


@dataclass(frozen=True)
class Transfer(Record):
    """One finished operation in ``transfers``, newest first."""

    id: int
    time: float
    watch: str
    path: str
    op: str
    key: str | None
    kind: str | None
    codec: str | None
    original_size: int | None
    stored_size: int | None
    ratio: float | None
    cache_hit: bool | None
    seconds: float | None
    error: str | None
    why: str | None


@dataclass(frozen=True)
class Transfers(Record):
    """The answer to ``transfers``."""

    items: list[Transfer]


# -- browsing the store ------------------------------------------------------------------------


@dataclass(frozen=True)
class BrowseEntry(Record):
    """One stored file in ``browse.list``."""

    key: str
    name: str
    stored_key: str
    kind: str | None  # reference, delta, direct
    stored_as: str | None  # delta, whole, new reference
    codec: str | None
    original_size: int | None
    stored_size: int
    ratio: float | None
    sha256: str | None
    tool: str | None
    last_modified: str
    why: str | None
    reference: str | None


@dataclass(frozen=True)
class Summary(Record):
    """A folder's files: their original and stored bytes, and what was saved."""

    files: int
    original_bytes: int
    stored_bytes: int
    saved_bytes: int
    saved_percent: float
    complete: bool


@dataclass(frozen=True)
class Listing(Record):
    """The answer to ``browse.list``: one page of a folder, the summary of all of it."""

    url: str
    prefixes: list[str]
    files: list[BrowseEntry]
    reference_size: int | None
    summary: Summary
    total: int
    offset: int


@dataclass(frozen=True)
class Stores(Record):
    """The answer to ``browse.buckets``: where there is something to browse."""

    stores: list[str]
    error: str | None


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verified(Record):
    """The answer to ``verify``: the file rebuilt from the store matches its SHA-256."""

    url: str
    valid: bool
    sha256: str
    size: int
    kind: str


@dataclass(frozen=True)
class Written(Record):
    """What ``download`` and ``restore`` wrote."""

    url: str
    dest: str
    sha256: str
    size: int
    kind: str


@dataclass(frozen=True)
class Deleted(Record):
    """The answer to ``delete``: what went, and a warning if it will come back."""

    deleted: list[str]
    warning: str | None


@dataclass(frozen=True)
class Pruned(Record):
    """The answer to ``prune``: the versions deleted (or that would be, with ``dryrun``), the
    references deleted or retired, and the stored bytes before and after (engine/prune.py)."""

    url: str
    dryrun: bool
    rule: str  # the retention in words, e.g. "keep the last 5"
    deleted: list[str]
    kept: int
    references_deleted: list[str]
    retired: int  # references retired: their files re-encoded against a kept version
    reencoded: int  # files re-encoded by those retirements
    stored_before: int
    stored_after: int
    freed: int
    notes: list[str]


@dataclass(frozen=True)
class Paused(Record):
    """The answer to ``pause`` and ``resume``."""

    paused: bool | list[str]  # True: everything; else the paused watches


@dataclass(frozen=True)
class ItemRef(Record):
    """The file ``retry`` or ``cancel`` acted on."""

    watch: str
    path: str


@dataclass(frozen=True)
class Retried(Record):
    """The answer to ``retry`` without a path: how many failed files were queued again."""

    retried: int


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event(Record):
    """One pushed event; ``data`` has the shape EVENT_DATA gives its type."""

    seq: int
    time: str
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class AgentStarted(Record):
    """``agent.started``: the agent's pid and the folders it watches."""

    pid: int
    watches: list[str]


@dataclass(frozen=True)
class Nothing(Record):
    """No data (``agent.stopping``)."""


@dataclass(frozen=True)
class AgentError(Record):
    """``agent.error``: something the agent could not do (a config reload)."""

    error: str


@dataclass(frozen=True)
class PauseChanged(Record):
    """``agent.paused`` and ``agent.resumed``."""

    watch: str | None  # None: all
    reason: str | None = None  # why the agent paused or resumed itself (a full disk)


@dataclass(frozen=True)
class WatchNames(Record):
    """``config.reloaded``: the folders now watched."""

    watches: list[str]


@dataclass(frozen=True)
class ScanStarted(Record):
    """``scan.started``."""

    watch: str


@dataclass(frozen=True)
class ScanFinished(Record):
    """``scan.finished``: what a reconcile scan found."""

    watch: str
    files: int
    changed: int
    deletes: int
    errors: list[str]  # the first few
    root_missing: bool
    seconds: float


@dataclass(frozen=True)
class FileSeen(Record):
    """``file.queued`` and ``file.uploading``."""

    watch: str
    path: str
    size: int


@dataclass(frozen=True)
class Progress(Record):
    """``file.progress``: a large file's stage and how far along it is."""

    watch: str
    path: str
    stage: str  # hashing, reference, encoding, uploading
    done: int
    total: int | None


@dataclass(frozen=True)
class FileStored(Record):
    """``file.stored``: how a file was stored."""

    watch: str
    path: str
    op: str
    key: str
    kind: str
    codec: str | None
    original_size: int
    stored_size: int
    ratio: float | None
    cache_hit: bool | None
    seconds: float
    why: str


@dataclass(frozen=True)
class FileFailed(Record):
    """``file.failed``: a file that is not retried until the user acts."""

    watch: str
    path: str
    op: str | None
    error: str


@dataclass(frozen=True)
class FileRetry(Record):
    """``file.retry``: a file to be tried again after ``delay`` seconds."""

    watch: str
    path: str
    op: str | None
    error: str
    attempt: int
    delay: float


@dataclass(frozen=True)
class FileDeleted(Record):
    """``file.deleted``: a stored file deleted because its local file went."""

    watch: str
    path: str
    key: str


@dataclass(frozen=True)
class DeleteRefused(Record):
    """``delete.refused``: mirrored deletes held back, and why."""

    watch: str
    reason: str


@dataclass(frozen=True)
class PruneFinished(Record):
    """``prune.finished``: a prune (a watch's retention, or one a client asked for) is done."""

    url: str
    watch: str | None  # the watch whose retention ran; None for a prune a client asked for
    deleted: int
    references: int
    freed: int


def dropped(first: int, last: int) -> dict[str, Any]:
    """The marker a client gets in place of events ``first..last`` it lost (the event itself,
    not its data: it has no ``seq`` of its own)."""
    return {"type": EventType.EVENTS_DROPPED.value, "from": first, "to": last}


EVENT_DATA: dict[EventType, type[Record] | None] = {
    EventType.AGENT_STARTED: AgentStarted,
    EventType.AGENT_STOPPING: Nothing,
    EventType.AGENT_ERROR: AgentError,
    EventType.AGENT_PAUSED: PauseChanged,
    EventType.AGENT_RESUMED: PauseChanged,
    EventType.CONFIG_RELOADED: WatchNames,
    EventType.SCAN_STARTED: ScanStarted,
    EventType.SCAN_FINISHED: ScanFinished,
    EventType.FILE_QUEUED: FileSeen,
    EventType.FILE_UPLOADING: FileSeen,
    EventType.FILE_PROGRESS: Progress,
    EventType.FILE_STORED: FileStored,
    EventType.FILE_RETRY: FileRetry,
    EventType.FILE_FAILED: FileFailed,
    EventType.FILE_DELETED: FileDeleted,
    EventType.DELETE_REFUSED: DeleteRefused,
    EventType.PRUNE_FINISHED: PruneFinished,
    EventType.WATCH_STATE: None,  # watched folder → its state, a free mapping
    EventType.EVENTS_DROPPED: None,  # not data: see EventsDropped
}


def event_data(type: EventType, data: Any, *, strict: bool = False) -> Record | dict[str, str]:
    """An event's ``data`` decoded as its type's record (ProtocolError when it does not fit)."""
    cls = EVENT_DATA[type]
    if cls is None:
        return check(data, dict[str, str], f"{type} data", strict=strict)  # type: ignore[no-any-return]
    return cls.from_json(data, strict=strict, where=f"{type} data")
