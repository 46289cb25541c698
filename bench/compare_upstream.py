"""Sync one folder of release artifacts with dg-agent and with deltaglider 6.2.0, side by side.

    python bench/compare_upstream.py CORPUS_DIR    (e.g. what ../shared/corpus/fetch.sh fills)

Starts moto's S3 server on 127.0.0.1, runs a cold ``sync`` of CORPUS_DIR with each tool into its
own bucket, then has each tool read back every file the other (and itself) stored, and prints a
markdown table: original and stored bytes per artifact family, sync wall time, and how many files
each tool reads back bit-exact. One run, not a median: the benchmark issue builds the full suite.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import boto3

BIN = Path(sys.executable).parent


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TOOLS = {"dg-agent": "ours", "deltaglider": "theirs"}
"""Each tool's command, and the bucket it writes into."""


def environment(work: Path, endpoint: str) -> dict[str, str]:
    return dict(
        os.environ,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 (the emulator's dummy secret)
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        DG_SUPPRESS_DEPRECATION="1",
        DG_CACHE_DIR=str(work / "cache"),
        HOME=str(work / "home"),
    )


def client(env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def wait_for(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("moto_server did not start")


def sync_times(corpus: Path, env: dict[str, str]) -> dict[str, float]:
    seconds = {}
    for tool, bucket in TOOLS.items():
        argv = [str(BIN / tool), "sync", str(corpus), f"s3://{bucket}/c/", "-q"]
        start = time.perf_counter()
        subprocess.run([*argv, "--exclude", "*.tsv"], env=env, check=True, capture_output=True)
        seconds[tool] = time.perf_counter() - start
    return seconds


def stored_bytes(env: dict[str, str]) -> dict[str, dict[str, int]]:
    s3 = client(env)
    stored: dict[str, dict[str, int]] = {b: defaultdict(int) for b in TOOLS.values()}
    for bucket in TOOLS.values():
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                stored[bucket][obj["Key"].split("/")[1]] += obj["Size"]
    return stored


def cross_reads(
    corpus: Path, files: list[Path], env: dict[str, str], work: Path
) -> dict[tuple[str, str], int]:
    """How many files each tool reads back bit-exact from each tool's bucket."""
    readable: dict[tuple[str, str], int] = defaultdict(int)
    for p in files:
        rel = p.relative_to(corpus).as_posix()
        for reader in TOOLS:
            for bucket in TOOLS.values():
                out = work / "out" / reader / bucket / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                argv = [str(BIN / reader), "cp", f"s3://{bucket}/c/{rel}", str(out)]
                subprocess.run(argv, env=env, capture_output=True, check=False)
                if out.exists() and sha256(out) == sha256(p):
                    readable[reader, bucket] += 1
    return readable


def main(corpus: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="dg-compare-"))
    port = free_port()
    env = environment(work, f"http://127.0.0.1:{port}")
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for(port)
        s3 = client(env)
        for bucket in TOOLS.values():
            s3.create_bucket(Bucket=bucket)
        files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix != ".tsv")
        seconds = sync_times(corpus, env)
        stored = stored_bytes(env)
        readable = cross_reads(corpus, files, env, work)
    finally:
        server.terminate()
        server.wait()
    original: dict[str, int] = defaultdict(int)
    for p in files:
        original[p.relative_to(corpus).parts[0]] += p.stat().st_size
    ours, theirs = stored["ours"], stored["theirs"]
    print("| family | original bytes | dg-agent stored | deltaglider stored |")
    print("|---|---:|---:|---:|")
    for family in sorted(original):
        print(f"| {family} | {original[family]:,} | {ours[family]:,} | {theirs[family]:,} |")
    print(
        f"| **total** | {sum(original.values()):,} | {sum(ours.values()):,} | "
        f"{sum(theirs.values()):,} |"
    )
    print(
        f"\ncold sync wall time: dg-agent {seconds['dg-agent']:.2f} s, "
        f"deltaglider {seconds['deltaglider']:.2f} s ({len(files)} files)"
    )
    for reader in TOOLS:
        for tool, bucket in TOOLS.items():
            count = readable[reader, bucket]
            print(f"{reader} reads back what {tool} stored: {count}/{len(files)} bit-exact")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
