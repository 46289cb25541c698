"""``dg-agent cp``: local → store and store → local, one file or a folder (-r)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from dgagent.cli.common import Progress, Session, add_reference_policy, print_json, report_errors
from dgagent.cli.transfer import (
    Download,
    Outcome,
    Upload,
    advise,
    download_all,
    upload_all,
)
from dgagent.engine.store import Entry
from dgagent.errors import ConfigError, DgError, NotFoundError
from dgagent.paths import (
    Filters,
    download_path,
    folder_prefix,
    local_path_for,
    upload_key,
    walk,
)
from dgagent.storage import is_store_url


def run(args: argparse.Namespace, session: Session) -> int:
    src, dst = args.src, args.dst
    if is_store_url(src) and is_store_url(dst):
        raise ConfigError("copying store to store is not supported; cp downloads or uploads")
    if not is_store_url(src) and not is_store_url(dst):
        raise ConfigError("one of SRC and DST must be a store URL (s3://… or file:///…)")
    filters = Filters(args.filters)
    session.settings = session.settings.with_codec(args.codec)
    if is_store_url(dst):
        outcome = _upload(args, session, filters)
    else:
        outcome = _download(args, session, filters)
    if args.json:
        doc = {"files": outcome.done, "errors": outcome.errors}
        print_json(doc | ({"advice": outcome.advice} if outcome.advice else {}))
    return 1 if report_errors(outcome.errors) else 0


def _upload(args: argparse.Namespace, session: Session, filters: Filters) -> Outcome:
    source = Path(args.src)
    dest = session.location(args.dst)
    store = session.store(dest)
    if source.is_dir():
        if not args.recursive:
            raise ConfigError(f"{source} is a folder; add -r to copy it recursively")
        prefix = folder_prefix(dest.key)
        jobs = [Upload(p, prefix + rel) for rel, p in walk(source) if filters.wants(rel)]
    elif source.exists():
        jobs = [Upload(source, upload_key(source, dest))]
    else:
        raise NotFoundError(f"{source} does not exist")
    progress = Progress(len(jobs), enabled=None if not args.json else False)
    try:
        outcome = upload_all(
            store,
            jobs,
            delta=not args.no_delta,
            max_ratio=args.max_ratio,
            progress=progress,
            quiet=args.json or args.quiet,
            dryrun=args.dryrun,
        )
    finally:
        progress.clear()
    rerun = f"dg-agent cp -r --codec archive {shlex.quote(args.src)} {shlex.quote(args.dst)}"
    archive = session.settings.codec == "archive"
    advise(outcome, args.dst, None if archive else rerun, quiet=args.json or args.quiet)
    return outcome


def _download(args: argparse.Namespace, session: Session, filters: Filters) -> Outcome:
    src = session.location(args.src)
    store = session.store(src)
    if args.recursive:
        prefix = folder_prefix(src.key)
        root = Path(args.dst)
        entries = [
            e
            for e in store.list_files(prefix, recursive=True, details=False)
            if isinstance(e, Entry)
        ]
        jobs: list[Download] = []
        errors: list[str] = []
        for entry in entries:
            rel = entry.key[len(prefix) :]
            if not filters.wants(rel):
                continue
            try:
                jobs.append(Download(entry.key, local_path_for(root, rel)))
            except DgError as exc:
                errors.append(str(exc))
    else:
        if src.is_folder:
            raise ConfigError(f"{src.url} is a folder; add -r to copy it recursively")
        jobs, errors = [Download(src.key, download_path(src.key, args.dst))], []
    progress = Progress(len(jobs), enabled=None if not args.json else False)
    try:
        outcome = download_all(
            store, jobs, progress=progress, quiet=args.json or args.quiet, dryrun=args.dryrun
        )
    finally:
        progress.clear()
    outcome.errors[:0] = errors
    return outcome


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "cp",
        help="copy files between a local folder and a store",
        description="Copy a local file or folder to a store, or stored files back. A trailing "
        "'/' on DST names a folder; otherwise DST is the file name.",
        epilog="examples:\n  dg-agent cp app-1.2.zip s3://builds/releases/\n"
        "  dg-agent cp -r build/ file:///srv/artifacts/app/\n"
        "  dg-agent cp s3://builds/releases/app-1.2.zip ./restore/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("-r", "--recursive", action="store_true", help="copy folders")
    p.add_argument("--no-delta", action="store_true", help="store files whole (direct)")
    p.add_argument("--max-ratio", type=float, help="largest delta/file ratio worth keeping")
    add_reference_policy(p)
    p.add_argument(
        "--codec",
        choices=("compat", "archive"),
        help="compat (default; DeltaGlider-readable) or archive (deltas of expanded zip/gzip "
        "members: smaller, read only by dg-agent); default DG_CODEC or compat",
    )
    p.add_argument("--dryrun", "--dry-run", action="store_true", help="show what would be copied")
    p.add_argument("--json", action="store_true", help="print one JSON document of results")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.set_defaults(handler=run, filters=[])
    return p
