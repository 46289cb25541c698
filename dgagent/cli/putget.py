"""``dg-agent put`` and ``get``: DeltaGlider's original one-file commands, kept for its users.

``put FILE URL`` reads URL as the DeltaSpace folder, as upstream's SDK ``upload`` does (with or
without a trailing '/'), and prints one JSON summary. ``get URL`` accepts the logical name or its
``.delta`` key and writes to ``-o FILE`` or to stdout. Stdout is only written once the whole file
has been rebuilt and its SHA-256 checked, so a failure never leaves half a file in a pipe.
"""

from __future__ import annotations

import argparse
import posixpath
import shutil
import sys
from pathlib import Path
from typing import Any

from dgagent.cli.common import Session, add_reference_policy, print_json
from dgagent.engine import keys
from dgagent.engine.metadata import Kind
from dgagent.engine.store import DeltaStore, PutResult
from dgagent.errors import ConfigError, NotFoundError
from dgagent.fileio import scratch_dir
from dgagent.paths import download_path, folder_prefix


def put_summary(store: DeltaStore, result: PutResult) -> dict[str, Any]:
    """One upload as upstream's ``UploadSummary`` describes it, in our words."""
    if result.reference_size:
        operation = "reference"
    elif result.kind is Kind.DELTA:
        operation = "delta"
    else:
        operation = "direct"
    return {
        "operation": operation,
        "url": store.url(result.key),
        "key": result.key,
        "stored_key": result.stored_key,
        "original_size": result.original_size,
        "stored_size": result.stored_size + result.reference_size,
        "ratio": round(result.ratio, 6),
        "is_delta": result.kind is Kind.DELTA,
        "sha256": result.sha256,
        "cache_hit": result.cache_hit,
    }


def run_put(args: argparse.Namespace, session: Session) -> int:
    source = Path(args.file)
    if source.is_dir():
        raise ConfigError(f"{source} is a folder; put stores one file (use cp -r or sync)")
    if not source.exists():
        raise NotFoundError(f"{source} does not exist")
    location = session.location(args.url)
    store = session.store(location)
    key = folder_prefix(location.key) + source.name
    result = store.put(source, key, delta=not args.no_delta, max_ratio=args.max_ratio)
    print_json(put_summary(store, result))
    return 0


def run_get(args: argparse.Namespace, session: Session) -> int:
    location = session.location(args.url)
    if location.is_folder:
        raise ConfigError(f"{location.url} names a folder; get reads one file (use cp -r)")
    store = session.store(location)
    if args.output not in (None, "-"):
        dest = download_path(location.key, args.output)
        result = store.get(location.key, dest)
        print(f"download: {store.url(result.key)} to {dest}", file=sys.stderr)
        return 0
    out = sys.stdout.buffer
    if out.isatty():
        raise ConfigError(
            "refusing to write binary data to a terminal; use -o FILE or redirect stdout"
        )
    with scratch_dir(session.settings.cache_dir.parent / "work", prefix="dg-get-") as work:
        name = posixpath.basename(keys.logical_key(location.key))
        tmp = work / (name or "file")
        store.get(location.key, tmp)  # verified before a single byte reaches stdout
        with tmp.open("rb") as f:
            shutil.copyfileobj(f, out, 1024 * 1024)
        out.flush()
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    put = sub.add_parser(
        "put",
        help="store one file in a DeltaSpace and print a JSON summary (DeltaGlider's put)",
        description="Store FILE in the DeltaSpace (folder) URL names, with or without a "
        "trailing '/': s3://b/releases and s3://b/releases/ both store releases/FILE.",
        epilog="example:\n  dg-agent put app-1.2.zip s3://builds/releases/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    put.add_argument("file")
    put.add_argument("url", help="the DeltaSpace folder: s3://bucket/path/ or file:///path/")
    put.add_argument("--no-delta", action="store_true", help="store the file whole (direct)")
    put.add_argument("--max-ratio", type=float, help="largest delta/file ratio worth keeping")
    add_reference_policy(put)
    put.set_defaults(handler=run_put)

    get = sub.add_parser(
        "get",
        help="rebuild one stored file to -o FILE or stdout (DeltaGlider's get)",
        description="Rebuild the file URL names (its logical name or its .delta key), check its "
        "SHA-256, and write it to -o FILE, or to stdout when stdout is not a terminal.",
        epilog="examples:\n  dg-agent get s3://builds/releases/app-1.2.zip -o app.zip\n"
        "  dg-agent get s3://builds/releases/app-1.2.zip.delta | sha256sum",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    get.add_argument("url")
    get.add_argument(
        "-o", "--output", metavar="FILE", help="write here (into it if a folder; '-': stdout)"
    )
    get.set_defaults(handler=run_get)
    return [put, get]
