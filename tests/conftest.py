"""Fixtures that start real parts: moto's S3 server over HTTP on 127.0.0.1, isolated dirs, and
for the tests that guard correctness two real S3 servers (SeaweedFS, rclone; tests/servers.py).

Every process started here is stopped by its pid at the end of the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import boto3
import pytest

from dgagent.engine.cache import ReferenceCache
from dgagent.engine.store import DeltaStore
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage, S3Options, S3Storage, Storage
from tests.faults.proxy import FaultProxy
from tests.servers import start_rclone, start_seaweedfs, stop

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def aws_env() -> Iterator[None]:
    """Fake credentials for the emulator; never the user's real ones, never a real endpoint."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        DG_SUPPRESS_DEPRECATION="1",
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def s3_endpoint(aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server as a separate process on a free 127.0.0.1 port."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()}") from None
                time.sleep(0.1)
        os.environ["AWS_ENDPOINT_URL"] = url
        yield url
    finally:
        os.environ.pop("AWS_ENDPOINT_URL", None)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the cache, config and state of every test (and its subprocesses) in tmp_path."""
    for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        path = tmp_path / "xdg" / var.lower()
        path.mkdir(parents=True)
        monkeypatch.setenv(var, str(path))
    monkeypatch.setenv("DG_CACHE_DIR", str(tmp_path / "xdg" / "dg-cache"))
    for var in (
        "DG_MAX_RATIO",
        "DG_DELTA_EXTENSIONS",
        "DG_XDELTA_LEVEL",
        "DG_LOG_LEVEL",
        "DG_CODEC",
        "DG_REFERENCE_POLICY",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    """A fault-injecting (and request-counting) proxy in front of the session's S3 emulator."""
    fault = FaultProxy(upstream_port=int(s3_endpoint.rsplit(":", 1)[1]))
    fault.start()
    try:
        yield fault
    finally:
        fault.stop()


@pytest.fixture
def s3_options(s3_endpoint: str) -> S3Options:
    return S3Options(endpoint_url=s3_endpoint, checksum_when_required=True)


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """A new empty bucket for this test."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def seaweedfs_endpoint(aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SeaweedFS (``weed mini``) on free 127.0.0.1 ports, started when a test first asks."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server.endpoint
    finally:
        stop(server)


@pytest.fixture(scope="session")
def rclone_endpoint(aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``rclone serve s3`` of a temporary directory, started when a test first asks."""
    server = start_rclone(tmp_path_factory.mktemp("rclone"))
    try:
        yield server.endpoint
    finally:
        stop(server)


class ServerBucket(NamedTuple):
    """A new empty bucket on one S3 server."""

    name: str
    """The server: "moto", "seaweedfs" or "rclone"."""
    endpoint: str
    bucket: str
    options: S3Options


SERVER_ENDPOINTS = {
    "moto": "s3_endpoint",
    "seaweedfs": "seaweedfs_endpoint",
    "rclone": "rclone_endpoint",
}


@pytest.fixture(params=list(SERVER_ENDPOINTS))
def server_bucket(request: pytest.FixtureRequest) -> ServerBucket:
    """A new empty bucket on each S3 server in turn: moto, SeaweedFS, rclone."""
    server = str(request.param)
    endpoint = str(request.getfixturevalue(SERVER_ENDPOINTS[server]))
    name = f"t-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return ServerBucket(
        name=server,
        endpoint=endpoint,
        bucket=name,
        options=S3Options(endpoint_url=endpoint, checksum_when_required=True),
    )


@pytest.fixture(params=["s3", "local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Storage, str]:
    """Each store kind in turn, with the URL of its root: (storage, 's3://b' or 'file:///…')."""
    if request.param == "s3":
        name = request.getfixturevalue("bucket")
        options = request.getfixturevalue("s3_options")
        return S3Storage(name, options), f"s3://{name}"
    root = tmp_path / "store"
    root.mkdir()
    return LocalStorage(root), f"file://{root}"


@pytest.fixture
def settings(tmp_path: Path) -> EngineSettings:
    return EngineSettings(cache_dir=tmp_path / "cache" / "references")


@pytest.fixture
def store(backend: tuple[Storage, str], settings: EngineSettings) -> DeltaStore:
    cache = ReferenceCache(settings.cache_dir, max_bytes=settings.cache_max_bytes)
    return DeltaStore(backend[0], settings=settings, cache=cache)
