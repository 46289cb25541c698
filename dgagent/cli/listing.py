"""``dg-agent ls`` and ``dg-agent stats``: what is stored, and what it saved."""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from dgagent.cli.common import Session, human, percent, print_json, s3_options, when
from dgagent.cli.paths import folder_prefix
from dgagent.engine import keys
from dgagent.engine.store import Entry
from dgagent.storage import ObjectInfo, Prefix, list_buckets


def entry_record(entry: Entry, url: str) -> dict[str, Any]:
    original = entry.original_size
    return {
        "key": entry.key,
        "url": url,
        "stored_key": entry.stored_key,
        "kind": entry.kind.value if entry.kind else None,
        "codec": entry.codec,
        "original_size": original,
        "stored_size": entry.stored_size,
        "ratio": round(entry.stored_size / original, 6) if original else None,
        "sha256": entry.meta.file_sha256 if entry.meta else None,
        "last_modified": entry.info.last_modified.isoformat(),
        "why": entry.why,
        "reference": entry.reference,
    }


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
    rows = list(store.list_files(prefix, recursive=args.recursive))
    entries = [r for r in rows if isinstance(r, Entry)]
    if args.json:
        print_json(
            {
                "prefixes": [r.key for r in rows if isinstance(r, Prefix)],
                "files": [entry_record(e, store.url(e.key)) for e in entries],
            }
        )
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
        ratio = percent(row.stored_size, row.original_size) if row.original_size else "-"
        print(
            f"{when(row.info.last_modified)} {size(row.original_size):>10} "
            f"{size(row.stored_size):>10} {ratio:>6} {shown}"
        )
    if args.summarize:
        original = sum(e.original_size or 0 for e in entries)
        stored = sum(e.stored_size for e in entries)
        print(
            f"\nTotal Objects: {len(entries)}\n   Total Size: {size(original)}"
            f"\n  Stored Size: {size(stored)} (references not included)"
        )
    return 0


@dataclass
class SpaceTotals:
    files: int = 0
    original: int = 0
    stored: int = 0
    reference: int = 0
    archive: int = 0
    """Files stored as archive-codec deltas (readable by dg-agent only)."""

    @property
    def saved(self) -> int:
        return self.original - self.stored - self.reference

    def record(self, name: str) -> dict[str, Any]:
        total = self.stored + self.reference
        return {
            "deltaspace": name,
            "files": self.files,
            "original_bytes": self.original,
            "stored_bytes": total,
            "reference_bytes": self.reference,
            "saved_bytes": self.saved,
            "saved_percent": round(100 * self.saved / self.original, 2) if self.original else 0.0,
            "archive_files": self.archive,
        }


def gather_stats(session: Session, url: str) -> dict[str, SpaceTotals]:
    location = session.location(url)
    store = session.store(location)
    prefix = folder_prefix(location.key)
    spaces: dict[str, SpaceTotals] = defaultdict(SpaceTotals)
    for item in store.storage.list_objects(prefix):
        if isinstance(item, ObjectInfo) and keys.is_reference(item.key):
            spaces[keys.deltaspace_of(item.key)].reference += item.size
    for entry in store.list_files(prefix, recursive=True):
        if isinstance(entry, Entry):
            space = spaces[keys.deltaspace_of(entry.key)]
            space.files += 1
            space.original += entry.original_size or entry.stored_size
            space.stored += entry.stored_size
            space.archive += entry.codec not in (None, "compat")
    return dict(sorted(spaces.items()))


def run_stats(args: argparse.Namespace, session: Session) -> int:
    spaces = gather_stats(session, args.url)
    cut = len(folder_prefix(session.location(args.url).key))
    total = SpaceTotals()
    for space in spaces.values():
        total.files += space.files
        total.original += space.original
        total.stored += space.stored
        total.reference += space.reference
        total.archive += space.archive
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
        f"{'archive':>7}"
    )
    rows = [(name[cut:] or ".", space) for name, space in spaces.items()]
    for name, space in [*rows, ("TOTAL", total)]:
        stored = space.stored + space.reference
        print(
            f"{name:<40} {space.files:>6} {human(space.original):>11} "
            f"{human(stored):>11} {percent(space.saved, space.original):>7} {space.archive:>7}"
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
