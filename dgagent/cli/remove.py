"""``dg-agent rm`` and ``dg-agent verify``: delete logical files, rebuild and check them."""

from __future__ import annotations

import argparse
from typing import Any

from dgagent.cli.common import Session, nothing_stored, print_json, report_errors
from dgagent.engine import keys
from dgagent.engine.store import DeltaStore, Entry
from dgagent.errors import ConfigError, DgError
from dgagent.paths import Filters, folder_prefix


def run_rm(args: argparse.Namespace, session: Session) -> int:
    location = session.location(args.url)
    store = session.store(location)
    filters = Filters(args.filters)
    if args.recursive:
        prefix = folder_prefix(location.key)
        physical, references = _under(store, prefix, filters)
        # Everything under the folder goes: so do its references. A filtered delete takes a
        # reference only when the files it deletes were the last to need it.
        spaces = set() if filters.rules else {keys.deltaspace_of(k) for k in references}
        deleted = store.delete_physical(physical, dryrun=args.dryrun, spaces=spaces)
        kept = sorted(set(references) - set(deleted))
    else:
        if location.is_folder:
            raise ConfigError(f"{location.url} is a folder; add -r to delete everything in it")
        if args.filters:
            raise ConfigError("--exclude/--include select files under a folder; add -r")
        deleted, kept = store.delete([location.key], dryrun=args.dryrun), []
    if args.json:
        print_json(
            {
                "dryrun": args.dryrun,
                "deleted": [store.url(k) for k in deleted],
                "kept": [store.url(k) for k in kept],
            }
        )
        return 0
    tag = "(dryrun) " if args.dryrun else ""
    for key in [] if args.quiet else deleted:
        print(f"{tag}delete: {store.url(key)}")
    for key in [] if args.quiet else kept:
        print(f"kept: {store.url(key)} (deltas outside this operation still need it)")
    return 0


def _under(store: DeltaStore, prefix: str, filters: Filters) -> tuple[list[str], list[str]]:
    """What ``rm -r`` deletes under ``prefix`` (every object, or with filters the objects of
    the files they select), and the references it saw there, from one recursive listing."""
    found = store.listing(prefix, recursive=True, details=False)
    objects = [o.key for o in found.objects]
    references = [k for k in objects if keys.is_reference(k)]
    if not filters.rules:
        return objects, references
    chosen = {e.key for e in found.files if filters.wants(e.key[len(prefix) :])}
    # A file's stored object, and a delta a direct object of the same name shadows.
    physical = [
        k
        for k in objects
        if not keys.is_internal(k) and not keys.is_reference(k) and keys.logical_key(k) in chosen
    ]
    return physical, references


def run_verify(args: argparse.Namespace, session: Session) -> int:
    location = session.location(args.url)
    store = session.store(location)
    targets: list[tuple[str, Entry | None]]
    if args.recursive or location.is_folder:
        # Metadata from the listing (the cache, else parallel HEADs), not one HEAD per file.
        prefix = folder_prefix(location.key)
        targets = [(e.key, e) for e in store.listing(prefix, recursive=True).files]
        if not targets:
            raise nothing_stored(location.url)
    else:
        targets = [(location.key, None)]
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    for name, listed in targets:
        try:
            got = store.verify(name, listed=listed)
        except DgError as exc:
            errors.append(str(exc))
            results.append({"url": store.url(name), "valid": False, "error": str(exc)})
            continue
        checked = got.meta.file_sha256 is not None
        results.append(
            {
                "url": store.url(got.key),
                "valid": True,
                "kind": got.kind.value,
                "size": got.size,
                "sha256": got.sha256,
                "checked": checked,
            }
        )
        if not args.json:
            note = "" if checked else " (plain object: no checksum recorded to compare)"
            print(f"ok  {got.sha256}  {store.url(got.key)}{note}")
    if args.json:
        print_json({"results": results})
    return 1 if report_errors(errors) else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rm = sub.add_parser(
        "rm",
        help="delete stored files (references kept while any delta needs them)",
        epilog="examples:\n  dg-agent rm s3://builds/releases/app-1.0.zip\n"
        "  dg-agent rm -r --dryrun s3://builds/old/\n"
        "  dg-agent rm -r --exclude '*' --include '*-rc*' s3://builds/releases/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rm.add_argument("url")
    rm.add_argument("-r", "--recursive", action="store_true")
    rm.add_argument("--dryrun", "--dry-run", action="store_true", help="show what would be deleted")
    rm.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    rm.add_argument("--json", action="store_true", help="print what was deleted as JSON")
    rm.set_defaults(handler=run_rm, filters=[])
    verify = sub.add_parser(
        "verify",
        help="rebuild stored files and check their SHA-256",
        epilog="examples:\n  dg-agent verify s3://builds/releases/app-1.2.zip\n"
        "  dg-agent verify -r s3://builds/releases/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("url")
    verify.add_argument("-r", "--recursive", action="store_true")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=run_verify)
