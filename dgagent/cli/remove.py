"""``dg-agent rm`` and ``dg-agent verify``: delete logical files, rebuild and check them."""

from __future__ import annotations

import argparse
from typing import Any

from dgagent.cli.common import Session, print_json, report_errors
from dgagent.cli.paths import folder_prefix
from dgagent.engine import keys
from dgagent.engine.store import Entry
from dgagent.errors import ConfigError, DgError
from dgagent.storage import ObjectInfo


def run_rm(args: argparse.Namespace, session: Session) -> int:
    location = session.location(args.url)
    store = session.store(location)
    if args.recursive:
        prefix = folder_prefix(location.key)
        physical = [o.key for o in store.storage.list_objects(prefix) if isinstance(o, ObjectInfo)]
        spaces = {keys.deltaspace_of(k) for k in physical if keys.is_reference(k)}
        deleted = store.delete_physical(physical, dryrun=args.dryrun, spaces=spaces)
        kept = sorted({k for k in physical if keys.is_reference(k)} - set(deleted))
    else:
        if location.is_folder:
            raise ConfigError(f"{location.url} is a folder; add -r to delete everything in it")
        deleted, kept = store.delete([location.key], dryrun=args.dryrun), []
    tag = "(dryrun) " if args.dryrun else ""
    for key in deleted:
        print(f"{tag}delete: {store.url(key)}")
    for key in kept:
        print(f"kept: {store.url(key)} (deltas outside this operation still need it)")
    return 0


def run_verify(args: argparse.Namespace, session: Session) -> int:
    location = session.location(args.url)
    store = session.store(location)
    if args.recursive or location.is_folder:
        prefix = folder_prefix(location.key)
        names = [
            e.key
            for e in store.list_files(prefix, recursive=True, details=False)
            if isinstance(e, Entry)
        ]
    else:
        names = [location.key]
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in names:
        try:
            got = store.verify(name)
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
        "  dg-agent rm -r --dryrun s3://builds/old/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rm.add_argument("url")
    rm.add_argument("-r", "--recursive", action="store_true")
    rm.add_argument("--dryrun", action="store_true", help="show what would be deleted")
    rm.set_defaults(handler=run_rm)
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
