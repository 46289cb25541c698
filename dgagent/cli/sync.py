"""``dg-agent sync``: make a store prefix match a local folder, or a local folder match a prefix.

What counts as changed is engine/change.py (the Python API's ``Client.sync`` shares it).
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from dgagent.cli.common import (
    Progress,
    Session,
    add_reference_policy,
    nothing_stored,
    print_json,
    report_errors,
)
from dgagent.cli.transfer import (
    Download,
    Outcome,
    Upload,
    advise,
    download_all,
    upload_all,
)
from dgagent.engine.change import LocalFile, differs, remote_mtime
from dgagent.engine.store import DeltaStore, Entry
from dgagent.errors import ConfigError, DgError, NotFoundError
from dgagent.paths import Filters, folder_prefix, local_path_for, walk
from dgagent.storage import is_store_url


def scan_local(root: Path, filters: Filters) -> dict[str, LocalFile]:
    files: dict[str, LocalFile] = {}
    for rel, path in walk(root):
        if filters.wants(rel):
            st = path.stat()
            files[rel] = LocalFile(path, st.st_size, st.st_mtime)
    return files


def scan_remote(
    store: DeltaStore, prefix: str, filters: Filters, *, source: str | None = None
) -> dict[str, Entry]:
    """The stored files the filters select, with their metadata (read only for those).
    ``source``: the URL being copied from, which must hold something."""
    listed = store.listing(prefix, recursive=True, details=False).files
    if source is not None and not listed:
        raise nothing_stored(source)
    wanted = [e for e in listed if filters.wants(e.key[len(prefix) :])]
    return {e.key[len(prefix) :]: e for e in store.with_details(wanted)}


def run(args: argparse.Namespace, session: Session) -> int:
    if is_store_url(args.src) == is_store_url(args.dst):
        raise ConfigError("sync needs one local folder and one store URL (s3://… or file:///…)")
    filters = Filters(args.filters)
    session.settings = session.settings.with_codec(args.codec)
    quiet = args.json or args.quiet
    if is_store_url(args.dst):
        outcome = _to_store(args, session, filters, quiet)
    else:
        outcome = _to_local(args, session, filters, quiet)
    if args.json:
        doc = {"files": outcome.done, "errors": outcome.errors}
        print_json(doc | ({"advice": outcome.advice} if outcome.advice else {}))
    elif not outcome.done and not outcome.errors and not args.quiet:  # dryrun plans count too
        print("up to date: nothing to transfer")
    return 1 if report_errors(outcome.errors) else 0


def _to_store(args: argparse.Namespace, session: Session, filters: Filters, quiet: bool) -> Outcome:
    root = Path(args.src)
    if not root.is_dir():
        raise NotFoundError(f"{root} is not a folder; sync copies folders (use cp for one file)")
    location = session.location(args.dst)
    store = session.store(location)
    prefix = folder_prefix(location.key)
    local = scan_local(root, filters)
    remote = scan_remote(store, prefix, filters)
    jobs = [
        Upload(f.path, prefix + rel, new=rel not in remote)
        for rel, f in local.items()
        if rel not in remote or differs(f, remote[rel], size_only=args.size_only)
    ]
    progress = Progress(len(jobs), enabled=False if quiet else None)
    try:
        outcome = upload_all(
            store,
            jobs,
            delta=not args.no_delta,
            max_ratio=args.max_ratio,
            progress=progress,
            quiet=quiet,
            dryrun=args.dryrun,
        )
    finally:
        progress.clear()
    # Files already stored stay as they are (sync sees them unchanged): the next versions.
    rerun = (
        f"dg-agent sync --codec archive {shlex.quote(args.src)} {shlex.quote(args.dst)} for "
        "the next versions"
    )
    archive = session.settings.codec == "archive"
    advise(outcome, args.dst, None if archive else rerun, quiet=quiet)
    if args.delete:
        gone = [remote[rel].stored_key for rel in remote if rel not in local]
        if gone and not local:
            outcome.errors.append(
                f"{root} has no files, so --delete would remove all {len(gone)} stored files; "
                "nothing was deleted (use rm -r if that is what you want)"
            )
        elif gone:
            try:
                deleted = store.delete_physical(gone, dryrun=args.dryrun)
            except DgError as exc:
                outcome.errors.append(str(exc))
                deleted = []
            tag = "(dryrun) " if args.dryrun else ""
            for key in deleted:
                if not quiet:
                    print(f"{tag}delete: {store.url(key)}")
                outcome.done.append({"operation": "delete", "url": store.url(key)})
    return outcome


def _to_local(args: argparse.Namespace, session: Session, filters: Filters, quiet: bool) -> Outcome:
    location = session.location(args.src)
    store = session.store(location)
    prefix = folder_prefix(location.key)
    root = Path(args.dst)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is a file; sync writes into a folder")
    remote = scan_remote(store, prefix, filters, source=location.url)
    if not args.dryrun:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NotFoundError(f"cannot create {root}: {exc.strerror or exc}") from exc
    local = scan_local(root, filters)
    jobs: list[Download] = []
    errors: list[str] = []
    for rel, entry in remote.items():
        if rel in local and not differs(local[rel], entry, size_only=args.size_only):
            continue
        try:
            jobs.append(Download(entry.key, local_path_for(root, rel), remote_mtime(entry), entry))
        except DgError as exc:
            errors.append(str(exc))
    progress = Progress(len(jobs), enabled=False if quiet else None)
    try:
        outcome = download_all(store, jobs, progress=progress, quiet=quiet, dryrun=args.dryrun)
    finally:
        progress.clear()
    outcome.errors[:0] = errors
    if args.delete:
        _delete_local_extras(local, remote, outcome, dryrun=args.dryrun, quiet=quiet)
    return outcome


def _delete_local_extras(
    local: dict[str, LocalFile],
    remote: dict[str, Entry],
    outcome: Outcome,
    *,
    dryrun: bool,
    quiet: bool,
) -> None:
    for rel, f in local.items():
        if rel in remote:
            continue
        if not dryrun:
            try:
                os.unlink(f.path)
            except OSError as exc:
                outcome.errors.append(f"cannot delete {f.path}: {exc.strerror or exc}")
                continue
        if not quiet:
            print(f"{'(dryrun) ' if dryrun else ''}delete: {f.path}")
        outcome.done.append({"operation": "delete", "path": str(f.path)})


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sync",
        help="make a store prefix match a local folder, or the reverse",
        description="Copy new and changed files from SRC to DST (one local folder, one store "
        "URL). Changed: size differs, or mtime differs by more than 1 s and the SHA-256 too.",
        epilog="examples:\n  dg-agent sync ./dist s3://builds/releases/\n"
        "  dg-agent sync --delete s3://builds/releases/ ./mirror",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--delete", action="store_true", help="remove files missing from SRC")
    p.add_argument("--size-only", action="store_true", help="compare sizes only")
    p.add_argument("--no-delta", action="store_true", help="store files whole (direct)")
    p.add_argument("--max-ratio", type=float, help="largest delta/file ratio worth keeping")
    add_reference_policy(p)
    p.add_argument(
        "--codec",
        choices=("compat", "archive"),
        help="compat (default; DeltaGlider-readable) or archive (deltas of expanded zip/gzip "
        "members: smaller, read only by dg-agent); default DG_CODEC or compat",
    )
    p.add_argument("--dryrun", "--dry-run", action="store_true", help="show what would be done")
    p.add_argument("--json", action="store_true", help="print one JSON document of results")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.set_defaults(handler=run, filters=[])
    return p
