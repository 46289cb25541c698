"""``dg-agent migrate``: move a plain S3 prefix, a DeltaGlider prefix or a local folder to a store.

Every source file is read as its logical content (a delta at SRC is rebuilt and its SHA-256
checked, never skipped as upstream 6.2.0 does) and stored again at DST, through a temp file on disk
so no file is ever held in memory. A run is resumable: a file already at DST with the same logical
size and the same SHA-256 (or, for plain objects whose SHA-256 nobody recorded, the same source
modification time, which migrate records as ``dg-agent-mtime``) is not copied again.

Like upstream, the last part of SRC's prefix is kept under DST (``migrate s3://a/builds/
s3://b/archive/`` writes ``archive/builds/…``) unless ``--no-preserve-prefix`` is given.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgagent.cli.common import (
    Progress,
    Session,
    add_reference_policy,
    human,
    nothing_stored,
    percent,
    print_json,
    report_errors,
)
from dgagent.cli.transfer import WORKERS, describe_put, in_release_order, put_record
from dgagent.engine import keys
from dgagent.engine.metadata import Kind
from dgagent.engine.store import DeltaStore, Entry, PutResult
from dgagent.errors import ConfigError, DgError, NotFoundError
from dgagent.fileio import scratch_dir, sha256_file
from dgagent.paths import Filters, folder_prefix, walk
from dgagent.storage import ObjectInfo, is_store_url

MTIME_TOLERANCE = 1.0


@dataclass(frozen=True)
class Item:
    """One source file: a local path, or a logical key in the source store."""

    rel: str
    size: int | None
    sha256: str | None
    modified: float
    path: Path | None = None
    key: str | None = None


@dataclass(frozen=True)
class Plan:
    copy: list[Item]
    unchanged: list[tuple[Item, Entry]]


@dataclass
class Source:
    """Where files come from, and how to get one onto local disk."""

    label: str
    name: str
    """The last part of SRC's path (kept under DST unless --no-preserve-prefix)."""
    items: list[Item]
    store: DeltaStore | None = None
    prefix: str = ""
    problems: list[str] = field(default_factory=list)
    """Objects that cannot be migrated as they are (reported as errors, never silently lost)."""


def _local_source(root: Path, filters: Filters) -> Source:
    if not root.is_dir():
        raise NotFoundError(f"{root} is not a folder or store URL; migrate copies folders")
    if not any(root.iterdir()):
        raise NotFoundError(f"{root} is empty: there is nothing to migrate; check the path")
    items = []
    for rel, path in walk(root):
        if filters.wants(rel):
            st = path.stat()
            items.append(Item(rel, st.st_size, None, st.st_mtime, path=path))
    return Source(str(root).rstrip("/") + "/", root.resolve().name, items)


def _store_source(session: Session, url: str, filters: Filters) -> Source:
    location = session.location(url)
    store = session.store(location)
    prefix = folder_prefix(location.key)
    items = []
    entries = [e for e in store.list_files(prefix, recursive=True) if isinstance(e, Entry)]
    if not entries:
        raise nothing_stored(location.url)
    used = {keys.deltaspace_of(e.stored_key) for e in entries if e.kind is Kind.DELTA}
    problems = _unused_references(store, prefix, filters, used)
    for entry in entries:
        rel = entry.key[len(prefix) :]
        if not filters.wants(rel):
            continue
        if keys.is_delta(entry.stored_key) and entry.kind is Kind.PLAIN:
            problems.append(
                f"{store.url(entry.stored_key)} has no DeltaGlider metadata: it is a plain file "
                "named like a delta and was not copied; rename it to migrate it"
            )
            continue
        sha = entry.meta.file_sha256 if entry.meta and entry.meta.kind is not Kind.PLAIN else None
        items.append(
            Item(
                rel,
                entry.original_size,
                sha,
                entry.info.last_modified.timestamp(),
                key=entry.key,
            )
        )
    name = posixpath.basename(prefix.rstrip("/"))
    return Source(store.url(prefix), name, items, store, prefix, problems)


def _unused_references(
    store: DeltaStore, prefix: str, filters: Filters, used: set[str]
) -> list[str]:
    """A ``reference.bin`` that no delta beside it uses: a plain file (or a leftover reference)
    whose name is reserved at DST. Listing hides it, so say so instead of losing it silently."""
    raw = [o for o in store.storage.list_objects(prefix) if isinstance(o, ObjectInfo)]
    return [
        f"{store.url(o.key)} is not used by any delta (a plain file, or a reference left "
        "behind) and was not copied: 'reference.bin' is reserved; rename it to migrate it"
        for o in raw
        if keys.is_reference(o.key)
        and keys.deltaspace_of(o.key) not in used
        and filters.wants(o.key[len(prefix) :])
    ]


def unchanged(item: Item, entry: Entry) -> bool:
    """Whether DST already holds this exact file (the resume rule)."""
    if item.size is None or entry.original_size != item.size:
        return False
    recorded = entry.meta.file_sha256 if entry.meta and entry.meta.kind is not Kind.PLAIN else None
    if recorded is None:
        return False
    if item.sha256 is not None:
        return item.sha256 == recorded
    if item.path is not None:
        return sha256_file(item.path)[0] == recorded
    mtime = entry.meta.mtime if entry.meta else None
    return mtime is not None and abs(mtime - item.modified) <= MTIME_TOLERANCE


def make_plan(source: Source, dest: dict[str, Entry]) -> Plan:
    copy: list[Item] = []
    same: list[tuple[Item, Entry]] = []
    for item in source.items:
        entry = dest.get(item.rel)
        if entry is not None and unchanged(item, entry):
            same.append((item, entry))
        else:
            copy.append(item)
    return Plan(copy, same)


class Copier:
    """Copies planned items into DST: the files of one DeltaSpace one at a time in release
    order (transfer.in_release_order), DeltaSpaces in parallel."""

    def __init__(
        self,
        source: Source,
        dest: DeltaStore,
        prefix: str,
        *,
        args: argparse.Namespace,
        progress: Progress,
        work: Path,
        existing: set[str],
    ) -> None:
        self.source, self.dest, self.prefix = source, dest, prefix
        self.args, self.progress, self.work = args, progress, work
        self.existing = existing
        """Names DST already had when it was listed: only those may have another form to delete."""
        self.done: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def run(self, items: list[Item]) -> None:
        groups = in_release_order(
            items,
            key=lambda i: self.prefix + i.rel,
            mtime=lambda i: i.modified,
            serial=self.dest.needs_release_order,
        )

        def in_order(group: list[Item]) -> None:
            for item in group:
                self.one(item)

        pool = ThreadPoolExecutor(max_workers=max(1, self.args.workers))
        try:
            list(pool.map(in_order, groups))
        finally:
            # On Ctrl-C, drop the queued DeltaSpaces (a later run resumes them) instead of
            # copying them all before the interrupt takes effect.
            pool.shutdown(wait=True, cancel_futures=True)

    def one(self, item: Item) -> None:
        self.progress.start(item.rel)
        try:
            self._copy(item)
        except DgError as exc:
            self.errors.append(f"{self.source.label}{item.rel}: {exc}")
        except OSError as exc:
            self.errors.append(f"{self.source.label}{item.rel}: {exc.strerror or exc}")
        finally:
            self.progress.finish_one()

    def _copy(self, item: Item) -> None:
        key = self.prefix + item.rel
        args = self.args

        def put(path: Path) -> PutResult:
            return self.dest.put(
                path,
                key,
                delta=not args.no_delta,
                max_ratio=args.max_ratio,
                replacing=item.rel in self.existing,
            )

        if item.path is not None:
            result = put(item.path)
            source = item.path
        else:
            assert self.source.store is not None and item.key is not None
            folder = Path(tempfile.mkdtemp(dir=self.work))
            try:
                tmp = folder / posixpath.basename(item.rel)
                self.source.store.get(item.key, tmp)  # rebuilt and checked when it is a delta
                os.utime(tmp, (item.modified, item.modified))  # recorded: the resume rule
                result = put(tmp)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            source = Path(item.rel)
        self.progress.advance(result.original_size)
        record = put_record(self.dest, source, result)
        record["operation"] = "migrate"
        record["source"] = self.source.label + item.rel
        self.done.append(record)
        if not (args.quiet or args.json):
            self.progress.say(
                f"migrate: {self.source.label}{item.rel} to {self.dest.url(key)} "
                f"{describe_put(result)}"
            )


def table(copied: list[dict[str, Any]], same: list[tuple[Item, Entry]]) -> list[str]:
    rows = [
        (
            "copied",
            len(copied),
            sum(r["original_size"] for r in copied),
            sum(r["stored_size"] + r["reference_size"] for r in copied),
        ),
        (
            "unchanged",
            len(same),
            sum(item.size or 0 for item, _ in same),
            sum(entry.stored_size for _, entry in same),
        ),
    ]
    total = ("total", sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows))
    lines = [f"{'':<10} {'files':>7} {'original':>12} {'stored':>12} {'saved':>7}"]
    for label, files, original, stored in [*rows, total]:
        saved = percent(original - stored, original)
        lines.append(f"{label:<10} {files:>7} {human(original):>12} {human(stored):>12} {saved:>7}")
    return lines


def _confirm(count: int, size: int, src: str, dst: str) -> bool:
    stdin = sys.stdin
    if stdin is None or not stdin.isatty():
        raise ConfigError(
            f"stdin is not a terminal, so migrate cannot ask before copying {count} files; "
            "add --yes to copy them (or --dryrun to see the plan)"
        )
    sys.stderr.write(f"Migrate {count} files ({human(size)}) from {src} to {dst}? [y/N] ")
    sys.stderr.flush()
    return stdin.readline().strip().lower() in ("y", "yes")


def _open(args: argparse.Namespace, session: Session) -> tuple[Source, DeltaStore, str]:
    """The source's files, the destination store and the prefix files land under."""
    if not is_store_url(args.dst):
        raise ConfigError(
            f"{args.dst!r} is not a store URL; DST is s3://bucket/prefix/ or file:///…"
        )
    filters = Filters(args.filters)
    if is_store_url(args.src):
        source = _store_source(session, args.src, filters)
    else:
        source = _local_source(Path(args.src), filters)
    location = session.location(args.dst)
    dest = session.store(location)
    prefix = folder_prefix(location.key)
    if args.preserve_prefix and source.name:
        prefix += source.name + "/"
    if (
        source.store is not None
        and source.store.storage.url == dest.storage.url
        and (prefix.startswith(source.prefix) or source.prefix.startswith(prefix))
    ):
        raise ConfigError(
            f"{dest.url(prefix)} overlaps {source.label}; migrate into another prefix or bucket"
        )
    return source, dest, prefix


def _show_plan(args: argparse.Namespace, plan: Plan, source: Source, dst_label: str) -> None:
    """What --dryrun would copy, or that a real run has nothing to copy."""
    if args.json:
        doc: dict[str, Any] = {
            "files": [],
            "errors": source.problems,
            "unchanged": len(plan.unchanged),
        }
        if args.dryrun:
            doc = {
                "dryrun": True,
                "copy": [i.rel for i in plan.copy],
                "unchanged": [i.rel for i, _ in plan.unchanged],
            }
        print_json(doc)
        return
    if args.quiet:
        return
    if not args.dryrun:
        print(f"nothing to migrate: all {len(plan.unchanged)} files are already at {dst_label}")
        return
    for item in plan.copy:
        print(f"(dryrun) migrate: {source.label}{item.rel} to {dst_label}{item.rel}")
    print(f"{len(plan.copy)} to copy, {len(plan.unchanged)} already at {dst_label}")


def run(args: argparse.Namespace, session: Session) -> int:
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    source, dest, prefix = _open(args, session)
    existing = {
        e.key[len(prefix) :]: e
        for e in dest.list_files(prefix, recursive=True)
        if isinstance(e, Entry)
    }
    plan = make_plan(source, existing)
    dst_label = dest.url(prefix)
    if args.dryrun or not plan.copy:
        _show_plan(args, plan, source, dst_label)
        return 1 if report_errors(source.problems) else 0
    size = sum(i.size or 0 for i in plan.copy)
    if not args.yes and not _confirm(len(plan.copy), size, source.label, dst_label):
        print("dg-agent: not confirmed; nothing was copied", file=sys.stderr)
        return 1
    quiet = args.quiet or args.json
    progress = Progress(len(plan.copy), enabled=False if quiet else None)
    with scratch_dir(session.settings.cache_dir.parent / "work", prefix="dg-migrate-") as work:
        copier = Copier(
            source, dest, prefix, args=args, progress=progress, work=work, existing=set(existing)
        )
        try:
            copier.run(plan.copy)
        finally:
            progress.clear()
    errors = source.problems + copier.errors
    if args.json:
        doc = {"files": copier.done, "errors": errors, "unchanged": len(plan.unchanged)}
        print_json(doc)
    elif not args.quiet:
        print("\n".join(table(copier.done, plan.unchanged)))
    return 1 if report_errors(errors) else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "migrate",
        help="copy a plain S3 prefix, a DeltaGlider prefix or a local folder into a store",
        description="Copy every file under SRC (s3://…, file:///… or a local folder) into "
        "DeltaSpaces at DST. Deltas at SRC are rebuilt and checked, never skipped. Run it "
        "again to resume: files already at DST with the same size and SHA-256 are not copied.",
        epilog="examples:\n  dg-agent migrate --yes s3://old-bucket/builds/ s3://new-bucket/\n"
        "  dg-agent migrate --dryrun ./artifacts s3://builds/archive/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask before copying")
    p.add_argument("--dryrun", "--dry-run", action="store_true", help="show what would be copied")
    p.add_argument(
        "--no-preserve-prefix",
        dest="preserve_prefix",
        action="store_false",
        help="copy SRC's contents straight into DST instead of DST/<last part of SRC>/",
    )
    p.add_argument("--no-delta", action="store_true", help="store files whole (direct)")
    p.add_argument("--max-ratio", type=float, help="largest delta/file ratio worth keeping")
    add_reference_policy(p)
    p.add_argument(
        "--workers", type=int, default=WORKERS, help=f"files copied at once (default {WORKERS})"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document of results")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.set_defaults(handler=run, filters=[])
    return p
