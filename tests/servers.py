"""Real S3 servers for tests, besides moto: SeaweedFS (``weed mini``) and ``rclone serve s3``.

Each runs as a subprocess on free 127.0.0.1 ports, with its data and its log file in a temporary
directory, accepts the test credentials ``testing``/``testing``, counts as ready once a
``ListBuckets`` through boto3 succeeds, and is stopped by its pid (:func:`stop`).

What each server does, measured with boto3 (SeaweedFS 4.48, rclone v1.75.2, moto 5 for
comparison):

a. PutObject ``IfNoneMatch="*"`` on an existing key: moto and SeaweedFS answer 412
   PreconditionFailed and keep the object (SeaweedFS atomically: of 4 racing creators exactly
   one wins); rclone answers 200 and overwrites.
b. CompleteMultipartUpload ``IfNoneMatch="*"`` on an existing key: moto and SeaweedFS 412, object
   kept; but SeaweedFS checks without a lock: 4 uploads completed at once on a new key had more
   than one 200 in 15 of 20 trials (last writer wins). rclone: 200, overwritten.
c. ``head_object`` metadata keys: moto and SeaweedFS lowercase (``dg-file-sha256``); rclone
   capitalises each word (``Dg-File-Sha256``). Values come back unchanged on all three.
d. User metadata size: moto and SeaweedFS do not enforce AWS's 2 KB; only the HTTP header limit
   stops them (one header line of ~64 KB: moto 431, SeaweedFS closes the connection). rclone
   refuses with 400 ``MetadataTooLarge`` and counts more than AWS does: the ``x-amz-meta-``
   prefix of every key and the Content-Type too. Largest sum of len(key)+len(value) accepted:
   1822 with one key, 1701 with 12 keys; with ``ContentType="application/octet-stream"`` (as
   S3Storage sends) 1786 and 1665.
e. ListObjectsV2 gives ETag and LastModified on all three. moto and SeaweedFS: the LIST ETag
   equals HEAD's, single PUT and multipart (``"<md5>-<parts>"``, as CompleteMultipartUpload
   returned). rclone: the LIST ETag has no quotes (``dd5c…`` against HEAD's ``"dd5c…"``), and a
   multipart object's ETag in HEAD and LIST is the MD5 of its whole content, not the
   ``"<md5>-2"`` that CompleteMultipartUpload returned. rclone's LIST LastModified has
   milliseconds, HEAD's whole seconds.
f. DeleteObjects (batch, a missing key included) works on all three; all keys reported deleted.
g. Start-up to the first successful ListBuckets: SeaweedFS ~0.7-0.9 s, rclone ~0.15-0.3 s
   (moto ~1-2 s).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import botocore.exceptions
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BIN = Path(sys.executable).parent
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3
"""A port found free here may be taken by another process (another xdist worker) before the
server binds it: a server that fails to start is started again on new ports."""

Command = Callable[[Path, int], tuple[list[str], str]]
"""Builds (argv, endpoint) for one start attempt, in a temporary dir, with fresh ports."""


@dataclass
class S3Server:
    """One running S3 server."""

    name: str
    endpoint: str
    pid: int
    log: Path
    started_in: float = 0.0
    """Seconds from the spawn to the first successful ListBuckets."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


class ServerStartError(RuntimeError):
    """A server did not answer S3 requests in time."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 (held open together while chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def client(endpoint: str, *, timeout: float = 10) -> S3Client:
    """A boto3 S3 client for ``endpoint`` with the test credentials and no retries."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(
            retries={"mode": "standard", "max_attempts": 1},
            connect_timeout=timeout,
            read_timeout=timeout,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def log_tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def stop(server: S3Server) -> None:
    """Stop the server by its pid: terminate, wait, kill when it does not exit in time."""
    proc = server.process
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _spawn(name: str, argv: list[str], endpoint: str, log: Path, cwd: Path) -> S3Server:
    """Start ``argv`` (output to ``log``) and wait until ListBuckets on ``endpoint`` succeeds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_", "S3_"))}
    env["HOME"] = str(cwd)  # nothing read from, or written to, the user's home
    started = time.monotonic()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env
        )
    server = S3Server(name=name, endpoint=endpoint, pid=proc.pid, log=log, process=proc)
    s3 = client(endpoint, timeout=2)
    deadline = started + READY_TIMEOUT
    last = ""
    while True:
        if proc.poll() is not None:
            raise ServerStartError(
                f"{name} exited with {proc.returncode} during start-up; log {log}:\n"
                + log_tail(log)
            )
        try:
            s3.list_buckets()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            last = str(exc)
        else:
            server.started_in = time.monotonic() - started
            return server
        if time.monotonic() > deadline:
            stop(server)
            raise ServerStartError(
                f"{name} did not answer ListBuckets within {READY_TIMEOUT:.0f} s "
                f"(last error: {last}); log {log}:\n" + log_tail(log)
            )
        time.sleep(0.1)


def _start(name: str, tmp: Path, command: Command) -> S3Server:
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / f"{name}.log"
    error: ServerStartError | None = None
    for attempt in range(START_ATTEMPTS):
        argv, endpoint = command(tmp, attempt)
        try:
            return _spawn(name, argv, endpoint, log, tmp)
        except ServerStartError as exc:
            error = exc
    assert error is not None
    raise error


def _seaweedfs_command(tmp: Path, attempt: int) -> tuple[list[str], str]:
    data = tmp / f"data{attempt}"
    data.mkdir()
    config = tmp / "s3.json"
    identity = {
        "name": "tests",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    # Every port weed mini may open, each set explicitly (a gRPC port would default to the HTTP
    # port + 10000, which may be taken or above 65535).
    names = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
        "webdav.port",
        "debug.port",
        "s3.debug.port",
    )
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    argv = [
        str(BIN / "weed"),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-filer.localSocket={data}/filer.sock",
        f"-s3.localSocket={data}/s3.sock",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.iam=false",
    ]
    return argv, f"http://127.0.0.1:{ports['s3.port']}"


def _rclone_command(tmp: Path, attempt: int) -> tuple[list[str], str]:
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    (port,) = free_ports(1)
    argv = [
        str(BIN / "rclone"),
        "serve",
        "s3",
        f":local:{root}",
        "--config",
        os.devnull,
        "--cache-dir",
        str(tmp / "cache"),
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{ACCESS_KEY},{SECRET_KEY}",
        "--log-level",
        "INFO",
    ]
    return argv, f"http://127.0.0.1:{port}"


def start_seaweedfs(tmp: Path) -> S3Server:
    """``weed mini`` (master, volume, filer, S3) with its data under ``tmp``; WebDAV, admin UI,
    Iceberg, Lance, IAM API and telemetry off."""
    return _start("seaweedfs", tmp, _seaweedfs_command)


def start_rclone(tmp: Path) -> S3Server:
    """``rclone serve s3`` of a directory under ``tmp``, reading no rclone.conf."""
    return _start("rclone", tmp, _rclone_command)
