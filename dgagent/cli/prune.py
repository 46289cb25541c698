"""``dg-agent prune``: delete old versions by a retention rule and get their space back."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from dgagent.cli.common import Session, human, nothing_stored, print_json
from dgagent.engine.prune import Pruner, PruneReport, Retention, parse_duration
from dgagent.engine.store import DeltaStore
from dgagent.errors import ConfigError, NotFoundError
from dgagent.paths import folder_prefix


def run_prune(args: argparse.Namespace, session: Session) -> int:
    location = session.location(args.url)
    store = session.store(location)
    if location.key and not location.is_folder and _is_file(store, location.key):
        raise ConfigError(
            f"{location.url} is a file; prune works on folders (DeltaSpaces): give its folder, "
            "e.g. the URL up to the last '/'"
        )
    retention = Retention(
        keep_last=args.keep_last,
        older_than=parse_duration(args.older_than) if args.older_than else None,
    )
    quiet = args.quiet or args.json
    pruner = Pruner(store, retention, say=None if quiet else print)
    report = pruner.run(folder_prefix(location.key), recursive=args.recursive, dryrun=args.dryrun)
    if not report.kept and not report.deleted and not report.stored_before:
        raise nothing_stored(location.url)
    if args.json:
        print_json(record(store.url, report))
        return 0
    for note in [] if args.quiet else report.notes:
        print(f"note: {note}")
    if not args.quiet:
        print(summary(report))
    return 0


def record(url: Callable[[str], str], report: PruneReport) -> dict[str, Any]:
    """The JSON form of a prune report (``url`` turns a key into a URL)."""
    return {
        "dryrun": report.dryrun,
        "retention": {
            "keep_last": report.retention.keep_last,
            "older_than_seconds": report.retention.older_than,
        },
        "deleted": [url(e.key) for e in report.deleted],
        "kept": [url(e.key) for e in report.kept],
        "references_deleted": [url(r.key) for r in report.references],
        "retired": [
            {
                "reference": url(r.reference),
                "reference_bytes": r.reference_bytes,
                "target": url(r.target),
                "new_target": r.new_target,
                "files": [url(k) for k in r.files],
                "bytes_before": r.bytes_before,
                "bytes_after": r.bytes_after,
            }
            for r in report.retired
        ],
        "notes": report.notes,
        "stored_bytes_before": report.stored_before,
        "stored_bytes_after": report.stored_after,
        "freed_bytes": report.freed,
    }


def summary(report: PruneReport) -> str:
    would = "would be " if report.dryrun else ""
    files = len(report.deleted) + len(report.kept)
    lines = [
        f"{len(report.deleted)} of {files} files {would}deleted ({report.retention.describe()}), "
        f"{len(report.references)} references {would}deleted, "
        f"{len(report.retired)} retired.",
        f"Stored: {human(report.stored_before)} before, {human(report.stored_after)} after: "
        f"{human(report.freed)} {'would come' if report.dryrun else 'came'} back.",
    ]
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    prune = sub.add_parser(
        "prune",
        help="delete old versions (keep the last N, or those of a recent period) and get the "
        "space their references hold back",
        description="Per DeltaSpace (folder) and per release line in it (names that differ only "
        "in version numbers), keep the newest versions by the rule given and delete the rest. "
        "References no kept file needs are deleted; one that kept files need although its own "
        "version is gone is retired: those files are re-encoded against a kept version, each "
        "checked by SHA-256 before the old reference is deleted. Without a rule, nothing is "
        "deleted but such references are still given back.",
        epilog="examples:\n  dg-agent prune --keep-last 5 --dryrun s3://builds/releases/\n"
        "  dg-agent prune -r --older-than 180d s3://builds/\n"
        "  dg-agent prune -r --keep-last 10 --older-than 90d --json file:///srv/artifacts/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prune.add_argument("url", help="a folder (DeltaSpace); with -r, every one under it")
    prune.add_argument("-r", "--recursive", action="store_true")
    prune.add_argument(
        "--keep-last", type=int, metavar="N", help="keep the newest N versions of each line"
    )
    prune.add_argument(
        "--older-than",
        metavar="DURATION",
        help="delete versions older than this (e.g. 90d, 12w, 1y); with --keep-last, a version "
        "goes only when neither rule keeps it",
    )
    prune.add_argument(
        "--dryrun",
        "--dry-run",
        action="store_true",
        help="show exactly what would go and how many bytes come back (re-encodes in a scratch "
        "folder to know; writes nothing)",
    )
    prune.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    prune.add_argument("--json", action="store_true", help="print what was done as JSON")
    prune.set_defaults(handler=run_prune)
    return prune


def _is_file(store: DeltaStore, key: str) -> bool:
    try:
        store.resolve(key)
    except NotFoundError:
        return False
    return True
