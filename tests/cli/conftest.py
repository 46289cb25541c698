"""Fixtures for the command tests: run ``dg-agent`` in-process, and look at a store directly.

The ``remote`` fixture gives each test a store of each kind in turn (an S3 bucket on the moto
server, and a ``file://`` folder) plus raw access to what is physically stored there, so tests
check the real objects instead of trusting the product's own listing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from dgagent.cli.main import main
from tests.artifacts import source_tree, write_zip

META_DIR = ".dg-meta"
TEMP_PREFIX = ".dg-tmp-"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release(folder: Path, version: int, name: str | None = None, *, seed: int = 7) -> Path:
    """A zip of version ``version`` of a source tree (successive versions differ slightly)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"app-1.{version}.zip")
    return write_zip(path, source_tree(version, seed=seed))


def set_mtime(path: Path, mtime: float) -> None:
    os.utime(path, (mtime, mtime))


@dataclass(frozen=True)
class Result:
    """What one ``dg-agent`` run returned and printed."""

    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def assert_clean_failure(result: Result, *needles: str) -> None:
    """Non-zero exit, one sentence per problem (``dg-agent:``/``error:``), no traceback."""
    assert result.rc != 0, result
    lines = result.error_lines()
    assert lines, "a failure must say what went wrong on stderr"
    assert "Traceback" not in result.err
    for line in lines:
        assert line.startswith(("dg-agent: ", "error: ")), line
    text = " ".join(lines)
    for needle in needles:
        assert needle in text, (needle, text)


class Cli:
    """Runs ``dg-agent`` in this process and captures what it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *argv: str | Path) -> Result:
        self._capsys.readouterr()  # drop anything printed before this run
        rc = main([str(a) for a in argv])
        captured = self._capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    def ok(self, *argv: str | Path) -> Result:
        result = self(*argv)
        assert result.rc == 0, result
        assert "Traceback" not in result.err
        return result


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


class Remote:
    """A store as dg-agent sees it (URLs) and as it physically is (objects, metadata)."""

    kind: str
    base: str
    """URL of the store's root without a trailing '/', e.g. ``s3://b`` or ``file:///tmp/x/store``."""

    def url(self, rel: str = "") -> str:
        return f"{self.base}/{rel}"

    def space(self, rel: str) -> str:
        """The DeltaSpace name dg-agent reports for folder ``rel`` of this store."""
        raise NotImplementedError

    def objects(self) -> dict[str, int]:
        """Every physical object (relative key → stored size)."""
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def meta(self, rel: str) -> dict[str, str]:
        raise NotImplementedError

    def corrupt(self, rel: str) -> None:
        """Flip bytes in the middle of an object, keeping its size and metadata."""
        raise NotImplementedError

    def physical(self) -> set[str]:
        return set(self.objects())

    def sha(self, rel: str) -> str:
        return hashlib.sha256(self.read(rel)).hexdigest()

    def logical(self) -> set[str]:
        """Logical names: internal ``reference.bin`` hidden, ``.delta`` stripped."""
        names = set()
        for key in self.objects():
            if key.rpartition("/")[2] == "reference.bin":
                continue
            names.add(key.removesuffix(".delta"))
        return names


def _flip_middle(data: bytes) -> bytes:
    assert len(data) >= 8, "too small to corrupt meaningfully"
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 4]) + data[mid + 4 :]


class S3Remote(Remote):
    kind = "s3"

    def __init__(self, bucket: str, endpoint: str) -> None:
        self.bucket = bucket
        self.base = f"s3://{bucket}"
        self.client = boto3.client("s3", endpoint_url=endpoint)

    def space(self, rel: str) -> str:
        return rel

    def objects(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                found[obj["Key"]] = obj["Size"]
        return found

    def read(self, rel: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=rel)["Body"].read()

    def meta(self, rel: str) -> dict[str, str]:
        return dict(self.client.head_object(Bucket=self.bucket, Key=rel)["Metadata"])

    def corrupt(self, rel: str) -> None:
        meta = self.meta(rel)
        self.client.put_object(
            Bucket=self.bucket, Key=rel, Body=_flip_middle(self.read(rel)), Metadata=meta
        )


class LocalRemote(Remote):
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = f"file://{root}"

    def space(self, rel: str) -> str:
        return f"{str(self.root).lstrip('/')}/{rel}".rstrip("/")

    def _files(self) -> Iterator[tuple[str, Path]]:
        if not self.root.is_dir():
            return
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d != META_DIR]
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    path = Path(folder, name)
                    yield path.relative_to(self.root).as_posix(), path

    def objects(self) -> dict[str, int]:
        return {rel: path.stat().st_size for rel, path in self._files()}

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def meta(self, rel: str) -> dict[str, str]:
        path = self.root / rel
        doc = json.loads((path.parent / META_DIR / (path.name + ".json")).read_text())
        return dict(doc["metadata"])

    def corrupt(self, rel: str) -> None:
        path = self.root / rel
        path.write_bytes(_flip_middle(path.read_bytes()))


@pytest.fixture(params=["s3", "local"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """Each store kind in turn, empty."""
    if request.param == "s3":
        bucket: str = request.getfixturevalue("bucket")
        endpoint: str = request.getfixturevalue("s3_endpoint")
        return S3Remote(bucket, endpoint)
    root = tmp_path / "store"
    root.mkdir()
    return LocalRemote(root)


@pytest.fixture
def s3_remote(bucket: str, s3_endpoint: str) -> S3Remote:
    """An empty S3 bucket only (for what only S3 has, like listing buckets)."""
    return S3Remote(bucket, s3_endpoint)
