"""Bucket scale: ``ls -r``, ``stats``, an unchanged ``sync`` and ``rm -r`` of a bucket of many
objects (20,000 by default), by dg-agent and by DeltaGlider 6.2.0, with a plain boto3 LIST as the
floor, and the S3 requests each sent.

- The requests are counted by the tests' fault proxy (tests/faults/proxy.py, with no fault rules)
  between the tools and the S3 server, by operation: LIST, HEAD, GET, PUT, POST (DeleteObjects),
  DELETE. Every tool is pointed at the proxy; the buckets are filled past it, uncounted.
- The buckets are filled without one encode per object: each tool stores two real
  versions of a small artifact in each of SPACES DeltaSpaces, then the newest version's delta is
  copied with boto3 (metadata and all) until the bucket holds the asked number of objects. The
  source folder gets a hard link of that version per copy, so it is an unchanged copy of both
  buckets: the same size and the mtime dg-agent's metadata records, older than every object (all
  DeltaGlider's ``sync`` compares).
- dg-agent keeps what a HEAD told it in a local cache keyed by ETag: its first ``ls -r`` runs with
  an empty ``DG_CACHE_DIR`` (cold), every later command with the same one (warm).
- Each tool's ``--version`` is timed too: the start-up every command below pays.
- Commands that change nothing run ``runs`` times (the median is shown); a cold listing and
  ``rm -r`` run once, as each can only happen once, and so does DeltaGlider's ``stats
  --detailed`` (a HEAD per object on every run: nothing to learn from a second one).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.context import Context
from bench.corpus import synthetic_series
from bench.measure import median, run_output
from bench.servers import tool_env
from bench.speed import DG, UPSTREAM
from tests.faults.proxy import FaultProxy

SPACES = 4
"""DeltaSpaces (folders) of each bucket; the copies are spread over them evenly."""
VERSIONS = 2
"""Real versions stored per DeltaSpace: a reference and a delta, the delta is what is copied."""
ARTIFACT_BYTES = 100_000
"""Size asked of the synthetic generator (its smallest tree, ~300 KB tars)."""
PREFIX = "rel/"
COPIERS = 16
"""Threads copying objects: moto answers requests concurrently, and one copy at a time would
leave it idle during each round trip."""

Log = Callable[[str], None]


@dataclass
class Row:
    """One command's wall-time samples, the requests of its last run, and what it reported."""

    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    """CPU seconds of the command's process (none for the in-process boto3 LIST, whose process
    also runs the proxy): unlike wall time, barely moved by other load on the machine."""
    requests: dict[str, int] = field(default_factory=dict)
    files: int | None = None
    """Files (or objects, for the boto3 LIST) the command listed or counted."""
    left: int | None = None
    """Objects left under the prefix after a ``rm -r``."""

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds": median(self.samples),
            "samples": self.samples,
            "cpu_seconds": median(self.cpu),
            "requests": dict(sorted(self.requests.items())),
            "total": sum(self.requests.values()),
            "files": self.files,
            "left": self.left,
        }


@dataclass
class Buckets:
    """The two buckets of one run, the folder both are an unchanged copy of, and their size."""

    ours: str
    theirs: str
    src: Path
    objects: dict[str, int]


@contextmanager
def counting(port: int) -> Iterator[FaultProxy]:
    """The request-counting proxy in front of the S3 server on ``port``, for a ``with`` block."""
    proxy = FaultProxy(upstream_port=port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def client(endpoint: str) -> Any:
    """A boto3 S3 client for ``endpoint`` with the emulator's dummy credentials."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 (the emulator's dummy secret)
        region_name="us-east-1",
        config=Config(
            max_pool_connections=COPIERS,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def keys(s3: Any, bucket: str, prefix: str = PREFIX) -> list[str]:
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [obj["Key"] for obj in page.get("Contents", [])]
    return found


def copy_name(path: Path, k: int) -> str:
    """The name of the ``k``-th copy of ``path``: ``app-2.1.0.tar`` → ``app-2.1.0-c7.tar``."""
    return f"{path.stem}-c{k}{path.suffix}"


def _seed(src: Path) -> list[Path]:
    """VERSIONS versions in each of SPACES folders of ``src``; the newest of each folder."""
    newest = []
    for n in range(SPACES):
        files = synthetic_series(src / f"s{n}", versions=VERSIONS, size=ARTIFACT_BYTES, seed=n)
        newest.append(files[-1])
    return newest


@dataclass(frozen=True)
class Copy:
    """One copy: of which object to which key, and the local hard link that matches it."""

    source: str
    key: str
    original: Path
    link: Path


def _copies(src: Path, newest: list[Path], count: int) -> list[Copy]:
    """``count`` copies of the newest versions' deltas, round-robin over the spaces."""
    out = []
    for k in range(count):
        path = newest[k % SPACES]
        rel = path.relative_to(src).as_posix()
        name = copy_name(path, k)
        folder = rel.rsplit("/", 1)[0]
        source, key = f"{PREFIX}{rel}.delta", f"{PREFIX}{folder}/{name}.delta"
        out.append(Copy(source=source, key=key, original=path, link=path.with_name(name)))
    return out


def _fill(s3: Any, bucket: str, copies: list[Copy]) -> None:
    """Copy each delta object (its metadata comes along) in a thread pool."""

    def copy(c: Copy) -> None:
        s3.copy_object(Bucket=bucket, Key=c.key, CopySource={"Bucket": bucket, "Key": c.source})

    with ThreadPoolExecutor(COPIERS) as pool:
        list(pool.map(copy, copies))


def build(ctx: Context, objects: int, log: Log) -> Buckets:
    """Both buckets of about ``objects`` objects each, and the folder that is a copy of them."""
    src = ctx.fresh("scale-src")
    newest = _seed(src)
    ours, theirs = ctx.bucket("scale-dg"), ctx.bucket("scale-up")
    log(f"scale: storing {SPACES * VERSIONS} versions with dg-agent and with deltaglider")
    run_output(
        [DG, "sync", "-q", str(src), f"s3://{ours}/{PREFIX}"], ctx.env(ctx.fresh("cache-dg"))
    )
    argv = [UPSTREAM, "sync", "-q", f"{src}/", f"s3://{theirs}/{PREFIX}"]
    run_output(argv, ctx.env(ctx.fresh("cache-up")))
    s3 = client(ctx.s3.endpoint)
    copies = _copies(src, newest, max(0, objects - len(keys(s3, ours))))
    log(f"scale: copying {len(copies):,} delta objects into each bucket")
    for bucket in (ours, theirs):
        _fill(s3, bucket, copies)
    for c in copies:
        # a hard link shares the original's size and mtime: what the copied metadata records
        os.link(c.original, c.link)
    counts = {"dg-agent": len(keys(s3, ours)), "deltaglider": len(keys(s3, theirs))}
    return Buckets(ours, theirs, src, counts)


class Bench:
    """Runs each command against the proxy and keeps its row."""

    def __init__(self, proxy: FaultProxy, runs: int, log: Log) -> None:
        self.proxy = proxy
        self.runs = runs
        self.log = log
        self.rows: dict[str, Row] = {}

    def command(
        self, key: str, argv: list[str], env: dict[str, str], *, once: bool = False
    ) -> tuple[Row, str]:
        """Run ``argv`` (``runs`` times unless ``once``); its row and the last run's stdout."""
        self.log(f"scale: {key}")
        row, out = Row(), ""
        for _ in range(1 if once else self.runs):
            self.proxy.seen.clear()
            wall, cpu, out = run_output(argv, env)
            row.samples.append(wall)
            row.cpu.append(cpu)
            row.requests = dict(self.proxy.seen)
        self.rows[key] = row
        return row, out

    def floor(self, bucket: str) -> None:
        """boto3's ``list_objects_v2`` paginator in this process: no start-up, nothing else."""
        self.log("scale: boto3 list")
        s3, row = client(self.proxy.url), Row()
        for _ in range(self.runs):
            self.proxy.seen.clear()
            start = time.perf_counter()
            row.files = len(keys(s3, bucket))
            row.samples.append(time.perf_counter() - start)
            row.requests = dict(self.proxy.seen)
        self.rows["boto3 list"] = row


def lines(out: str) -> int:
    return sum(1 for line in out.splitlines() if line.strip())


def _deltaglider(bench: Bench, b: Buckets, env: dict[str, str]) -> None:
    via = ["--endpoint-url", bench.proxy.url]
    url = f"s3://{b.theirs}/{PREFIX}"
    row, out = bench.command("deltaglider ls", [UPSTREAM, "ls", "-r", url, *via], env)
    row.files = lines(out)
    # its stats has no --endpoint-url: the proxy comes from AWS_ENDPOINT_URL in env
    row, out = bench.command("deltaglider stats", [UPSTREAM, "stats", "--json", b.theirs], env)
    row.files = json.loads(out)["object_count"]
    argv = [UPSTREAM, "stats", "--detailed", "--json", b.theirs]
    row, out = bench.command("deltaglider stats detailed", argv, env, once=True)
    row.files = json.loads(out)["object_count"]
    bench.command("deltaglider sync", [UPSTREAM, "sync", "-q", f"{b.src}/", url, *via], env)


def _dg_agent(bench: Bench, b: Buckets, env: dict[str, str]) -> None:
    via = ["--endpoint-url", bench.proxy.url]
    url = f"s3://{b.ours}/{PREFIX}"
    row, out = bench.command("dg-agent ls cold", [DG, "ls", "-r", url, *via], env, once=True)
    row.files = lines(out)
    row, out = bench.command("dg-agent ls warm", [DG, "ls", "-r", url, *via], env)
    row.files = lines(out)
    argv = [DG, "stats", "--json", f"s3://{b.ours}/", *via]
    row, out = bench.command("dg-agent stats", argv, env)
    row.files = json.loads(out)["total"]["files"]
    bench.command("dg-agent sync", [DG, "sync", "-q", str(b.src), url, *via], env)


def _removals(bench: Bench, b: Buckets, ours: dict[str, str], theirs: dict[str, str]) -> None:
    s3 = client(bench.proxy.url)
    for key, argv, env, bucket in (
        ("dg-agent rm", [DG, "rm", "-r", "-q"], ours, b.ours),
        ("deltaglider rm", [UPSTREAM, "rm", "-r", "-q"], theirs, b.theirs),
    ):
        url = f"s3://{bucket}/{PREFIX}"
        row, _ = bench.command(key, [*argv, url, "--endpoint-url", bench.proxy.url], env, once=True)
        row.left = len(keys(s3, bucket))


def measure(ctx: Context, objects: int, log: Log) -> dict[str, Any]:
    """Every figure of the section, on buckets of about ``objects`` objects."""
    started = time.monotonic()
    b = build(ctx, objects, log)
    setup = time.monotonic() - started
    log(f"scale: buckets of {b.objects} objects ready in {setup:.0f} s")
    with counting(ctx.s3.port) as proxy:
        bench = Bench(proxy, ctx.runs, log)
        ours = tool_env(ctx.work, proxy.url, ctx.fresh("scale-cache-dg"))
        theirs = tool_env(ctx.work, proxy.url, ctx.fresh("scale-cache-up"))
        bench.floor(b.ours)
        # the fixed cost of a fresh process (interpreter, imports): part of every row below
        bench.command("deltaglider start-up", [UPSTREAM, "--version"], theirs)
        bench.command("dg-agent start-up", [DG, "--version"], ours)
        _deltaglider(bench, b, theirs)
        _dg_agent(bench, b, ours)
        _removals(bench, b, ours, theirs)
    return {
        "objects": b.objects,
        "spaces": SPACES,
        "runs": ctx.runs,
        "setup_seconds": setup,
        "rows": {k: v.as_json() for k, v in bench.rows.items()},
    }
