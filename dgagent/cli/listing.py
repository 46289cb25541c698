"""``dg-agent ls`` and ``dg-agent stats``: what is stored, and what it saved."""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from dgagent.cli.common import (
    Session,
    human,
    nothing_stored,
    percent,
    print_json,
    s3_options,
    when,
)
from dgagent.engine import keys
from dgagent.engine.prune import Reclaimable, reclaimable
from dgagent.engine.results import Entry, Summary
from dgagent.paths import folder_prefix
from dgagent.storage import ObjectInfo, Prefix, list_buckets


def entry_record(entry: Entry, url: str) -> dict[str, Any]:
    original = entry.original_size
    return {
        "key": entry.key,
        "url": url,
        "stored_key": entry.stored_key,
        "kind": entry.kind.value if entry.kind else None,
        "stored_as": entry.stored_as,
        "codec": entry.codec,
        "original_size": original,
        "stored_size": entry.stored_size,
        "ratio": round(entry.stored_size / original, 6) if original else None,
        "sha256": entry.meta.file_sha256 if entry.meta else None,
        "last_modified": entry.info.last_modified.isoformat(),
        "why": entry.why,
        "reference": entry.reference,
    }


def ratio_text(entry: Entry) -> str:
    """A file's own ratio: its delta (or whole object) over its size; ``ref`` for a file that
    became a reference (its delta is nearly empty; its bytes are in the reference)."""
    if entry.stored_as == "new reference":
        return "ref"
    return percent(entry.stored_size, entry.original_size) if entry.original_size else "-"


def run_ls(args: argparse.Namespace, session: Session) -> int:
    if not args.url:
        names = list_buckets(s3_options(args))
        if args.json:
            print_json({"buckets": names})
        for name in [] if args.json else names:
            print(f"s3://{name}")
        return 0
    location = session.location(args.url)
    store = session.store(location)
    prefix = folder_prefix(location.key) if args.recursive else location.key
    found = store.listing(prefix, recursive=args.recursive)
    rows, entries = found.rows, found.files
    if not rows and location.key:
        raise nothing_stored(location.url)
    summary = found.summary()
    if args.json:
        doc: dict[str, Any] = {
            "prefixes": [r.key for r in rows if isinstance(r, Prefix)],
            "files": [entry_record(e, store.url(e.key)) for e in entries],
        }
        if args.summarize:
            doc["summary"] = summary.record()
        print_json(doc)
        return 0
    # Names are shown relative to the listed folder (full keys of a file:// store are long).
    base = location.key.rpartition("/")[0]
    cut = len(base) + 1 if base else 0
    exact = not args.human_readable

    def size(n: float | None) -> str:
        return human(n, exact=exact)

    for row in rows:
        if isinstance(row, Prefix):
            print(f"{'PRE':>44} {row.key[cut:]}")
            continue
        shown = row.key[cut:]
        if row.codec not in (None, "compat"):
            shown += f"  [{row.codec}]"  # deltas only dg-agent can read
        print(
            f"{when(row.info.last_modified)} {size(row.original_size):>10} "
            f"{size(row.stored_size):>10} {ratio_text(row):>6} {shown}"
        )
    if args.summarize:
        print(
            f"\nTotal Objects: {summary.files}\n   Total Size: {size(summary.original_bytes)}"
            f"\n  Stored Size: {size(summary.stored_bytes)} (references included)"
            f"\n        Saved: {size(summary.saved_bytes)} ({summary.saved_percent:.1f}%)"
        )
    return 0


@dataclass
class SpaceTotals:
    """One DeltaSpace's files and what the store holds for it (results.Summary's definition:
    every object, references included)."""

    summary: Summary = field(default_factory=Summary)
    reference: int = 0
    archive: int = 0
    """Files stored as archive-codec deltas (readable by dg-agent only)."""
    reclaim: Reclaimable = field(default_factory=Reclaimable)
    """What its references hold for nothing: what ``dg-agent prune`` gives back."""

    def record(self, name: str) -> dict[str, Any]:
        return {
            "deltaspace": name,
            **self.summary.record(),
            "reference_bytes": self.reference,
            "archive_files": self.archive,
            "reclaimable_bytes": self.reclaim.total,
            "unneeded_reference_bytes": self.reclaim.unneeded,
            "retirable_reference_bytes": self.reclaim.retirable,
        }

    def __add__(self, other: SpaceTotals) -> SpaceTotals:
        return SpaceTotals(
            self.summary + other.summary,
            self.reference + other.reference,
            self.archive + other.archive,
            self.reclaim + other.reclaim,
        )


def gather_stats(session: Session, url: str) -> dict[str, SpaceTotals]:
    """Per DeltaSpace, from one recursive listing: the objects stored there (references
    included) and the files they hold."""
    location = session.location(url)
    store = session.store(location)
    found = store.listing(folder_prefix(location.key), recursive=True)
    if not found.objects and location.key:
        raise nothing_stored(location.url)
    spaces: dict[str, SpaceTotals] = defaultdict(SpaceTotals)
    objects: dict[str, list[ObjectInfo]] = defaultdict(list)
    files: dict[str, list[Entry]] = defaultdict(list)
    for obj in {o.key: o for o in found.objects}.values():
        space = spaces[keys.deltaspace_of(obj.key)]
        space.summary += Summary(stored_bytes=obj.size)
        objects[keys.deltaspace_of(obj.key)].append(obj)
        if keys.is_reference(obj.key):
            space.reference += obj.size
    for entry in found.files:
        space = spaces[keys.deltaspace_of(entry.key)]
        space.summary += Summary(files=1, original_bytes=entry.original_size or entry.stored_size)
        space.archive += entry.codec not in (None, "compat")
        files[keys.deltaspace_of(entry.key)].append(entry)
    for name, space in spaces.items():
        space.reclaim = reclaimable(files[name], objects[name])
    return dict(sorted(spaces.items()))


def run_stats(args: argparse.Namespace, session: Session) -> int:
    spaces = gather_stats(session, args.url)
    cut = len(folder_prefix(session.location(args.url).key))
    total = sum(spaces.values(), SpaceTotals())
    if args.json:
        print_json(
            {
                "url": args.url,
                "total": total.record("*"),
                "deltaspaces": [s.record(n) for n, s in spaces.items()],
            }
        )
        return 0
    print(
        f"{'DeltaSpace':<40} {'files':>6} {'original':>11} {'stored':>11} {'saved':>7} "
        f"{'archive':>7} {'reclaimable':>11}"
    )
    rows = [(name[cut:] or ".", space) for name, space in spaces.items()]
    for name, space in [*rows, ("TOTAL", total)]:
        s = space.summary
        print(
            f"{name:<40} {s.files:>6} {human(s.original_bytes):>11} "
            f"{human(s.stored_bytes):>11} {percent(s.saved_bytes, s.original_bytes):>7} "
            f"{space.archive:>7} {human(space.reclaim.total):>11}"
        )
    if total.reclaim.total:
        print(
            f"\nUp to {human(total.reclaim.total)} is held by references no stored file is a "
            "version of: dg-agent prune -r --dryrun URL shows how much of it comes back"
        )
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    ls = sub.add_parser(
        "ls",
        help="list stored files with original and stored size",
        description="List logical files (internal reference.bin and .delta names hidden) with "
        "their original size, stored size and ratio. Without a URL, list S3 buckets.",
        epilog="examples:\n  dg-agent ls s3://builds/releases/\n  dg-agent ls -r -h --summarize "
        "file:///srv/artifacts/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,  # -h means --human-readable, as in the AWS CLI
    )
    ls.add_argument("--help", action="help", help="show this help message and exit")
    ls.add_argument("url", nargs="?")
    ls.add_argument("-r", "--recursive", action="store_true")
    ls.add_argument("-h", "--human-readable", action="store_true")
    ls.add_argument("--summarize", action="store_true", help="print totals at the end")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=run_ls)
    stats = sub.add_parser(
        "stats",
        help="files, original and stored bytes, saved %% per DeltaSpace",
        epilog="example:\n  dg-agent stats s3://builds/ --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("url")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=run_stats)
    return [ls, stats]
