"""The local S3 endpoint (moto's server on 127.0.0.1, stopped by its pid) and tool environments."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

BIN = Path(sys.executable).parent
"""The venv's bin dir: dg-agent, deltaglider and moto_server are installed beside python."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    """moto_server on a free 127.0.0.1 port, for the duration of a ``with`` block."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> S3Server:
        self.proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("moto_server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 (the emulator's dummy secret)
            region_name="us-east-1",
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def bucket_bytes(self, bucket: str, prefix: str = "") -> int:
        total = 0
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        for page in pages:
            total += sum(obj["Size"] for obj in page.get("Contents", []))
        return total


def tool_env(work: Path, endpoint: str | None, cache: Path) -> dict[str, str]:
    """Environment for a dg-agent or deltaglider subprocess: dummy credentials, the endpoint,
    and a private cache and HOME (a fresh ``cache`` dir is what makes a run cold)."""
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 (the emulator's dummy secret)
        AWS_DEFAULT_REGION="us-east-1",
        DG_SUPPRESS_DEPRECATION="1",
        DG_LOG_LEVEL="WARNING",
        DG_CACHE_DIR=str(cache),
        HOME=str(work / "home"),
        AWS_REQUEST_CHECKSUM_CALCULATION="when_required",
        AWS_RESPONSE_CHECKSUM_VALIDATION="when_required",
    )
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "DG_CONFIG", "DG_MAX_RATIO"):
        env.pop(var, None)
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env
