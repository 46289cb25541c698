"""``python -m bench``: run every measurement, print the markdown, write JSON and the docs page.

python -m bench                      # the corpus at --corpus, else the synthetic generator
python -m bench --corpus /tmp/corpus # a folder of family folders (what fetch.sh fills)
python -m bench --fetch              # run ../shared/corpus/fetch.sh into the cache dir first
python -m bench --quick              # ~5 minutes: fewer versions, files, idle seconds, objects
python -m bench --series botocore    # also 40 botocore wheels in a row (bench/long_series.sh)
python -m bench --series-dir DIR --skip size --skip speed --skip overhead --skip agent --skip scale
                                     # the long-series section alone, on a folder of versions
python -m bench --skip size --skip speed --skip overhead --skip agent --skip series
                                     # the bucket-scale section alone (--scale-objects N)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import (
    agent,
    corpus,
    machine,
    overhead,
    prune,
    report,
    scale,
    series,
    sizes,
    speed,
    targets,
)
from bench.context import Context
from bench.servers import S3Server

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("size", "speed", "overhead", "agent", "series", "prune", "scale")
ON_S3 = ("size", "speed", "overhead", "agent")
"""The sections that measure the corpus families on the S3 server."""
SCALE_OBJECTS = 20_000
SCALE_OBJECTS_QUICK = 2_000


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, help="folder of family folders of successive versions")
    p.add_argument("--fetch", action="store_true", help="run fetch.sh into --cache-dir and use it")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "dg-agent-bench" / "corpus",
        help="where --fetch keeps the corpus (default: %(default)s)",
    )
    p.add_argument(
        "--series",
        metavar="PACKAGE",
        help="run long_series.sh for PACKAGE's wheels into --series-cache and measure them",
    )
    p.add_argument("--series-count", type=int, default=40, help="wheels for --series (%(default)s)")
    p.add_argument(
        "--series-cache",
        type=Path,
        default=Path.home() / ".cache" / "dg-agent-bench" / "series",
        help="where --series keeps its wheels (default: %(default)s)",
    )
    p.add_argument("--series-dir", type=Path, help="a folder of versions of one artifact")
    p.add_argument(
        "--scale-objects",
        type=int,
        metavar="N",
        help=f"objects in each bucket of the scale section (default {SCALE_OBJECTS:,}; "
        f"{SCALE_OBJECTS_QUICK:,} with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="a ~5 minute run (the table says so)")
    p.add_argument("--runs", type=int, help="runs per timing (default 3)")
    p.add_argument("--skip", action="append", choices=SECTIONS, default=[], help="skip a section")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    p.add_argument("--keep", action="store_true", help="keep the work dir (its path is printed)")
    p.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the tables of an earlier run's JSON (and rewrite the docs)",
    )
    return p.parse_args(argv)


def _families(args: argparse.Namespace, work: Path) -> tuple[list[corpus.Family], str]:
    source = corpus.fetch(args.cache_dir) if args.fetch else args.corpus
    if source is not None:
        limit = 3 if args.quick else None
        fams = corpus.stage(source.resolve(), work / "corpus", limit=limit)
        return fams, f"real release artifacts from {source}" + (" (first 3 versions)" * bool(limit))
    versions, size = (4, 3_000_000) if args.quick else (5, 6_000_000)
    fams = corpus.synthesize(work / "corpus", versions=versions, size=size)
    return fams, f"synthetic ({versions} versions per family, ~{size / 1e6:g} MB of content)"


def _measure_on_s3(
    args: argparse.Namespace, ctx: Context, results: dict[str, Any], log: series.Log
) -> None:
    if "speed" not in args.skip or "size" not in args.skip:
        measured = speed.measure(ctx, log)
        results["speed"] = {k: v.medians() for k, v in measured.items()}
        if "size" not in args.skip:
            results["sizes"] = sizes.as_json(sizes.measure(ctx, measured, log))
    if "overhead" not in args.skip:
        results["overhead"] = overhead.measure(ctx, log)
    if "agent" not in args.skip:
        results["agent"] = agent.measure(ctx, log)


def _scale_objects(args: argparse.Namespace) -> int:
    if args.scale_objects is not None:
        return int(args.scale_objects)
    return SCALE_OBJECTS_QUICK if args.quick else SCALE_OBJECTS


def _series_folder(args: argparse.Namespace) -> Path | None:
    if args.series_dir:
        return Path(args.series_dir).resolve()
    if args.series:
        return series.fetch(args.series, args.series_count, args.series_cache)
    return None


def _series(args: argparse.Namespace, work: Path, log: series.Log) -> dict[str, Any]:
    folder = _series_folder(args)
    if folder is None:
        return series.skipped("no --series PACKAGE or --series-dir DIR was given")
    return series.measure(folder, work, log)


def _prune(args: argparse.Namespace, work: Path, log: series.Log) -> dict[str, Any]:
    folder = _series_folder(args)
    if folder is None:
        return series.skipped("no --series PACKAGE or --series-dir DIR was given")
    return prune.measure(folder, work, log)


def write_docs(path: Path, table: str) -> None:
    """Rewrite the docs page with ``table``, keeping its hand-written notes."""
    previous = path.read_text() if path.exists() else ""
    path.write_text(report.performance_doc(table, previous))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render:
        table = report.markdown(json.loads(args.render.read_text()))
        print(table)
        if not args.no_docs:
            write_docs(args.docs, table)
        return 0
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {line}", file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="dg-bench-"))
    results: dict[str, Any] = {"machine": machine.describe()}
    on_s3 = [s for s in ON_S3 if s not in args.skip]
    with_scale = "scale" not in args.skip
    try:
        # The families (and the S3 server) only for the sections that use them, so that the
        # long-series section alone starts neither (the scale section makes its own buckets).
        families, described = _families(args, work) if on_s3 else ([], "none")
        runs = args.runs or 3
        results["settings"] = {
            "corpus": described,
            "quick": args.quick,
            "runs": runs,
            "families": {f.name: [p.name for p in f.files] for f in families},
        }
        log(f"{len(families)} families; work dir {work}")
        with S3Server() if on_s3 or with_scale else contextlib.nullcontext() as s3:
            if s3 is not None:
                ctx = Context(work, s3, families, runs, args.quick)
                _measure_on_s3(args, ctx, results, log)
                if with_scale:
                    results["scale"] = scale.measure(ctx, _scale_objects(args), log)
        if "series" not in args.skip:
            results["series"] = _series(args, work / "series", log)
        if "prune" not in args.skip:
            results["prune"] = _prune(args, work / "prune", log)
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        results["targets"] = targets.judge(results)
        results["seconds"] = time.monotonic() - started
    finally:
        if args.keep:
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    table = report.markdown(results)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if not args.no_docs:
        write_docs(args.docs, table)
    log(f"done: {args.json}" + ("" if args.no_docs else f", {args.docs}"))
    return 0
