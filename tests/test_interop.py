"""Interoperability with upstream DeltaGlider 6.2.0, both ways, checked bit-exact by SHA-256.

Upstream runs as its real CLI (``deltaglider``, in a subprocess) and we run as our engine or our
``dg-agent`` CLI, both against the same moto S3 server over HTTP. Upstream is always given the
explicit ``s3://bucket/prefix/<basename>`` form for uploads (its trailing-slash form stores at the
bucket root) and an explicit local file path for downloads (``cp s3://k dir/`` fails upstream).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

import boto3
import pytest

from dgagent.engine.metadata import Kind
from dgagent.engine.prune import Pruner, Retention
from dgagent.engine.store import DeltaStore, Entry
from dgagent.errors import IntegrityError
from dgagent.settings import EngineSettings
from dgagent.storage import S3Options, S3Storage
from tests.artifacts import (
    source_tree,
    write_gzip9_tarball,
    write_jar,
    write_npm_tgz,
    write_series,
    write_tar,
    write_zip,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BIN = Path(sys.executable).parent
UPSTREAM = BIN / "deltaglider"
OURS = BIN / "dg-agent"
TIMEOUT = 120
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def md5_of(path: Path) -> str:
    """The proxy's informational ``dg-md5``."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by '/'-separated relative path."""
    return {p.relative_to(root).as_posix(): sha256_of(p) for p in root.rglob("*") if p.is_file()}


def xdelta3_encode(reference: Path, target: Path, out: Path) -> Path:
    """A delta made the way the brief's legacy writers are simulated (with -D -R)."""
    xdelta3 = shutil.which("xdelta3")
    assert xdelta3, "xdelta3 is needed for the interop tests"
    subprocess.run(
        [xdelta3, "-e", "-9", "-D", "-R", "-f", "-s", str(reference), str(target), str(out)],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    return out


@dataclass(frozen=True)
class Cli:
    """One command-line tool run in a subprocess with a throwaway HOME and TMPDIR."""

    binary: Path
    env: Mapping[str, str]

    def run(
        self, *args: str, check: bool = True, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.binary), *args],
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{self.binary.name} {' '.join(args)} exited {done.returncode}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done


@dataclass(frozen=True)
class Upstream:
    """deltaglider 6.2.0's CLI on one bucket."""

    cli: Cli
    bucket: str

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def upload(self, source: Path, prefix: str) -> None:
        """Upload into ``prefix`` in the explicit form (the trailing-slash one is broken)."""
        self.cli.run("cp", "-q", str(source), self.url(f"{prefix}/{source.name}"))

    def download(
        self, key: str, dest: Path, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return self.cli.run("cp", self.url(key), str(dest), check=check)

    def download_all(self, jobs: Iterable[tuple[str, Path]]) -> None:
        """Several downloads at once (each one is a separate upstream process)."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda job: self.download(*job), jobs))

    def verify(self, delta_key: str) -> dict[str, Any]:
        done = self.cli.run("verify", self.url(delta_key))
        return cast(dict[str, Any], json.loads(done.stdout))

    def ls(self, prefix: str) -> list[str]:
        """The names upstream's ``ls`` shows under ``prefix/`` (``PRE`` rows as ``sub/``)."""
        done = self.cli.run("ls", self.url(f"{prefix}/"))
        names = []
        for line in done.stdout.splitlines():
            parts = line.split(None, 3)
            if parts and parts[0] == "PRE":
                names.append(parts[1])
            elif len(parts) == 4:
                names.append(parts[3])
        return names


@pytest.fixture
def tool_env(s3_endpoint: str, tmp_path: Path) -> dict[str, str]:
    """The test's environment (endpoint, fake credentials, isolated XDG dirs) plus a HOME and
    TMPDIR of its own, so neither tool touches the real ones."""
    home = tmp_path / "home"
    tmp = tmp_path / "tmpdir"
    home.mkdir()
    tmp.mkdir()
    env = dict(os.environ)
    assert env.get("AWS_ENDPOINT_URL") == s3_endpoint
    env.update(HOME=str(home), TMPDIR=str(tmp), DG_SUPPRESS_DEPRECATION="1")
    return env


@pytest.fixture
def upstream(tool_env: dict[str, str], bucket: str) -> Upstream:
    return Upstream(Cli(UPSTREAM, tool_env), bucket)


@pytest.fixture
def ours(tool_env: dict[str, str]) -> Cli:
    return Cli(OURS, tool_env)


@pytest.fixture
def s3_store(bucket: str, s3_options: S3Options, settings: EngineSettings) -> DeltaStore:
    return DeltaStore(S3Storage(bucket, s3_options), settings=settings)


@pytest.fixture
def s3(s3_endpoint: str) -> S3Client:
    """A plain boto3 client, to look at (and plant) objects the way any S3 user would."""
    return boto3.client("s3", endpoint_url=s3_endpoint)


def all_keys(s3: S3Client, bucket: str, prefix: str = "") -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def zips(folder: Path, name: str, versions: Iterable[int]) -> list[Path]:
    return [write_zip(folder / f"{name}-1.{v}.zip", source_tree(v)) for v in versions]


# ------------------------------------------------------------------ we write, upstream reads


def test_upstream_reads_every_kind_of_file_we_write(
    tmp_path: Path, bucket: str, s3: S3Client, s3_store: DeltaStore, upstream: Upstream
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    releases = [
        *zips(src, "app", (1, 2, 3)),
        write_jar(src / "app-1.3.jar", source_tree(3)),
        write_tar(src / "app-1.3.tar", source_tree(3)),
        write_gzip9_tarball(src / "app-src-1.3.tar.gz", source_tree(3)),
        write_npm_tgz(src / "pkg-1.3.0.tgz", source_tree(3)),
        src / "README.txt",
        src / "empty-1.0.zip",
    ]
    (src / "README.txt").write_text("release notes\n" * 10)
    (src / "empty-1.0.zip").write_bytes(b"")
    uploads = [(path, f"releases/{path.name}") for path in releases]
    # Two more DeltaSpaces whose first file is gzip-compressed. Whether that becomes a reference
    # is the engine's choice (xdelta3 without -D, as upstream decodes, unpacks a gzip reference
    # first, so a -D delta against one would be unreadable upstream); whatever it stores, upstream
    # must read every file back below.
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    tarballs = [write_gzip9_tarball(gz_dir / f"tool-1.{v}.tar.gz", source_tree(v)) for v in (1, 2)]
    npm = [write_npm_tgz(gz_dir / f"lib-1.{v}.0.tgz", source_tree(v)) for v in (1, 2)]
    uploads += [(p, f"tarballs/{p.name}") for p in tarballs] + [(p, f"npm/{p.name}") for p in npm]

    results = {key: s3_store.put(path, key) for path, key in uploads}

    # The layout really holds references and deltas, so upstream's delta path is exercised.
    first = results["releases/app-1.1.zip"]
    assert first.kind is Kind.DELTA and first.reference_size == first.original_size
    for later in ("releases/app-1.2.zip", "releases/app-1.3.zip"):
        assert results[later].kind is Kind.DELTA and results[later].reference_size == 0
    assert results["releases/README.txt"].kind is Kind.DIRECT
    assert results["releases/empty-1.0.zip"].kind is Kind.DIRECT
    stored = all_keys(s3, bucket)
    assert "releases/reference.bin" in stored
    deltas = sorted(k for k in stored if k.endswith(".delta"))
    assert deltas == sorted(r.stored_key for r in results.values() if r.kind is Kind.DELTA)

    out = tmp_path / "out"
    upstream.download_all((key, out / key) for _, key in uploads)
    for path, key in uploads:
        assert sha256_of(out / key) == sha256_of(path), f"upstream rebuilt {key} wrongly"

    sources = {f"{key}.delta": path for path, key in uploads}
    with ThreadPoolExecutor(max_workers=4) as pool:
        reports = dict(zip(deltas, pool.map(upstream.verify, deltas), strict=True))
    for key, report in reports.items():
        assert report["valid"] is True, (key, report)
        assert report["actual_sha256"] == sha256_of(sources[key]), key

    assert sorted(upstream.ls("releases")) == sorted(p.name for p in releases)


def test_metadata_is_the_format_md_superset(
    tmp_path: Path, bucket: str, s3: S3Client, ours: Cli
) -> None:
    ds = "meta/releases"
    first, later = zips(tmp_path, "app", (1, 2))
    notes = tmp_path / "NOTES.txt"
    notes.write_text("notes\n")
    # UTC+14 for our process: a dg-created-at written in local time would be 14 hours off.
    for path in (first, later, notes):
        ours.run("cp", str(path), f"s3://{bucket}/{ds}/", extra_env={"TZ": "XYZ-14"})

    def head(key: str) -> tuple[dict[str, str], int]:
        r = s3.head_object(Bucket=bucket, Key=key)
        return dict(r["Metadata"]), int(r["ContentLength"])

    common = {"dg-tool", "dg-file-sha256", "dg-file-size", "dg-created-at"}
    delta_keys = common | {
        "dg-original-name",
        "dg-ref-key",
        "dg-ref-path",
        "dg-ref-sha256",
        "dg-delta-size",
        "dg-delta-cmd",
        "dg-note",
    }
    expected = {
        f"{ds}/reference.bin": (common | {"dg-source-name", "dg-note"}, first),
        f"{ds}/{first.name}.delta": (delta_keys, first),
        f"{ds}/{later.name}.delta": (delta_keys, later),
        f"{ds}/{notes.name}": (common | {"dg-original-name", "dg-compression", "dg-note"}, notes),
    }
    assert all_keys(s3, bucket) == set(expected)
    now = datetime.now(UTC).replace(tzinfo=None)
    metas: dict[str, dict[str, str]] = {}
    for key, (required, source) in expected.items():
        meta, size = head(key)
        metas[key] = meta
        assert required <= set(meta), f"{key} lacks {sorted(required - set(meta))}"
        extra = set(meta) - required
        assert all(k.startswith("dg-agent-") for k in extra), f"{key}: foreign keys {extra}"
        assert all(v.isascii() for v in meta.values()), meta
        assert meta["dg-tool"].startswith("dg-agent/")
        assert SHA256.match(meta["dg-file-sha256"]) and meta["dg-file-sha256"] == sha256_of(source)
        assert meta["dg-file-size"] == str(source.stat().st_size)
        created = meta["dg-created-at"]
        assert created.endswith("Z")
        assert abs(datetime.fromisoformat(created[:-1]) - now) < timedelta(minutes=10), created
        if key.endswith(".delta"):
            assert meta["dg-delta-size"] == str(size)
            assert meta["dg-ref-key"] == f"{ds}/reference.bin"
            assert meta["dg-ref-path"] == "reference.bin"
            assert meta["dg-ref-sha256"] == sha256_of(first)
            assert meta["dg-original-name"] == source.name
            assert meta["dg-delta-cmd"]

    ref = metas[f"{ds}/reference.bin"]
    assert ref["dg-note"] == "reference"
    assert ref["dg-source-name"] == first.name
    body = s3.get_object(Bucket=bucket, Key=f"{ds}/reference.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256_of(first)
    assert metas[f"{ds}/{first.name}.delta"]["dg-note"] == "zero-diff (reference identical)"
    assert metas[f"{ds}/{later.name}.delta"]["dg-note"] == "delta"
    direct = metas[f"{ds}/{notes.name}"]
    assert direct["dg-note"] == "passthrough"
    assert direct["dg-compression"] == "none"
    assert direct["dg-original-name"] == notes.name


# ------------------------------------------------------------------ upstream writes, we read


def test_we_read_what_upstream_writes(
    tmp_path: Path,
    s3: S3Client,
    s3_store: DeltaStore,
    upstream: Upstream,
    ours: Cli,
) -> None:
    up = tmp_path / "up"
    up.mkdir()
    series = [
        *zips(up, "app", (1, 2, 3)),
        write_tar(up / "app-1.3.tar", source_tree(3)),
        up / "README.txt",
    ]
    (up / "README.txt").write_text("upstream notes\n")
    for path in series:  # one by one, in order: the first zip becomes the reference
        upstream.upload(path, "up")
    mirror = tmp_path / "mirror"
    (mirror / "sub").mkdir(parents=True)
    zips(mirror, "svc", (1, 2))
    zips(mirror / "sub", "svc", (3,))
    (mirror / "sub" / "n.log").write_text("log line\n")
    upstream.cli.run("sync", f"{mirror}/", upstream.url("mirror/"))
    originals = {f"up/{p.name}": p for p in series} | {
        f"mirror/{rel}": mirror / rel for rel in tree_hashes(mirror)
    }

    # Precondition: upstream really wrote references and deltas (else nothing is tested here).
    stored = all_keys(s3, upstream.bucket)
    assert {"up/reference.bin", "mirror/reference.bin", "mirror/sub/reference.bin"} <= stored
    assert {
        "up/app-1.2.zip.delta",
        "up/app-1.3.zip.delta",
        "mirror/sub/svc-1.3.zip.delta",
    } <= stored

    engine_out = tmp_path / "engine-out"
    for key, path in originals.items():
        dest = engine_out / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        got = s3_store.get(key, dest)
        assert sha256_of(dest) == sha256_of(path) == got.sha256, key
        assert got.kind is (Kind.DIRECT if key.endswith((".txt", ".log")) else Kind.DELTA), key

    one = tmp_path / "cli-one"
    ours.run("cp", upstream.url("up/app-1.3.zip"), f"{one}/")
    assert sha256_of(one / "app-1.3.zip") == sha256_of(up / "app-1.3.zip")
    ours.run("cp", "-r", upstream.url("up/"), f"{tmp_path / 'cli-up'}/")
    assert tree_hashes(tmp_path / "cli-up") == tree_hashes(up)
    ours.run("sync", upstream.url("mirror/"), str(tmp_path / "cli-mirror"))
    assert tree_hashes(tmp_path / "cli-mirror") == tree_hashes(mirror)
    again = json.loads(
        ours.run("sync", "--json", upstream.url("mirror/"), str(tmp_path / "cli-mirror")).stdout
    )
    assert again == {"files": [], "errors": []}, "a second sync must transfer nothing"

    for prefix, recursive in (("up/", False), ("mirror/", True)):
        listing = json.loads(
            ours.run("ls", *(["-r"] if recursive else []), "--json", upstream.url(prefix)).stdout
        )
        files = {f["key"]: f for f in listing["files"]}
        wanted = {k: p for k, p in originals.items() if k.startswith(prefix)}
        assert set(files) == set(wanted)
        for key, path in wanted.items():
            assert files[key]["original_size"] == path.stat().st_size, key
            assert files[key]["sha256"] == sha256_of(path), key

    verified = ours.run("verify", "-r", "--json", upstream.url(""))
    results = json.loads(verified.stdout)["results"]
    assert {r["url"] for r in results} == {upstream.url(k) for k in originals}
    assert all(r["valid"] and r["checked"] for r in results), results


def test_upstream_gzip_data_loss_never_gives_us_a_wrong_file(
    tmp_path: Path, s3_store: DeltaStore, upstream: Upstream
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    tarballs = [write_gzip9_tarball(src / f"app-1.{v}.tar.gz", source_tree(v)) for v in (1, 2)]
    for path in tarballs:
        upstream.upload(path, "gz")

    # Upstream's own reader cannot get its gzip -9 uploads back (xdelta3 without -D
    # recompressed them on decode): its documented defect, pinned here.
    for path in tarballs:
        dest = tmp_path / "upstream-out" / path.name
        done = upstream.download(f"gz/{path.name}", dest, check=False)
        assert done.returncode != 0
        assert "SHA256 mismatch" in done.stdout + done.stderr
        assert not dest.exists()

    ours_out = tmp_path / "ours-out"
    ours_out.mkdir()
    kept = ours_out / tarballs[1].name
    kept.write_bytes(b"an older good copy")  # a failed get must leave it alone
    for path in tarballs:
        dest = ours_out / path.name
        before = dest.read_bytes() if dest.exists() else None
        try:
            got = s3_store.get(f"gz/{path.name}", dest)
        except IntegrityError:
            assert (dest.read_bytes() if dest.exists() else None) == before
        else:
            assert sha256_of(dest) == sha256_of(path) == got.sha256
    left = sorted(p.name for p in ours_out.iterdir())
    assert set(left) <= {p.name for p in tarballs}, f"temp files left behind: {left}"


# ------------------------------------------------------------- legacy and foreign dialects


def alias(field: str, style: str) -> str:
    """The metadata key for ``field`` (``x-y``) in one of upstream's historical spellings."""
    snake = field.replace("-", "_")
    return {"dg_x_y": f"dg_{snake}", "x_y": snake, "x-y": field}[style]


def put_raw(s3: S3Client, bucket: str, key: str, path: Path, meta: Mapping[str, str]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), Metadata=dict(meta))


@pytest.mark.parametrize("style", ["x_y", "dg_x_y", "x-y"])
def test_we_read_legacy_upstream_aliases(
    tmp_path: Path, bucket: str, s3: S3Client, s3_store: DeltaStore, style: str
) -> None:
    """≤5.x wrote bare underscore keys (``x_y``); upstream still reads ``dg_x_y`` and ``x-y``."""
    ds = f"legacy/{style.replace('-', 'h').replace('_', 'u')}/rel"
    files = zips(tmp_path, "app", (1, 2, 3))
    ref = files[0]
    notes = tmp_path / "README.txt"
    notes.write_text("legacy notes\n")

    def meta(**fields: str) -> dict[str, str]:
        return {alias(name.replace("_", "-"), style): value for name, value in fields.items()}

    created = "2024-01-01T00:00:00.000001Z"
    put_raw(
        s3,
        bucket,
        f"{ds}/reference.bin",
        ref,
        {
            **meta(
                source_name=ref.name,
                file_sha256=sha256_of(ref),
                created_at=created,
                tool="deltaglider/0.1.0",
                note="reference",
            ),
        },
    )
    for i, path in enumerate(files):
        delta = xdelta3_encode(ref, path, tmp_path / f"{path.name}.delta")
        fields = meta(
            original_name=path.name,
            file_sha256=sha256_of(path),
            file_size=str(path.stat().st_size),
            created_at=created,
            ref_key=f"{ds}/reference.bin",
            ref_sha256=sha256_of(ref),
            delta_size=str(delta.stat().st_size),
            delta_cmd=f"xdelta3 -e -9 -s reference.bin {path.name} {path.name}.delta",
            tool="deltaglider/0.1.0",
        )
        if i == 0:
            fields |= meta(note="zero-diff (reference identical)")
        put_raw(s3, bucket, f"{ds}/{path.name}.delta", delta, fields)
    put_raw(
        s3,
        bucket,
        f"{ds}/{notes.name}",
        notes,
        {
            **meta(
                original_name=notes.name,
                file_sha256=sha256_of(notes),
                file_size=str(notes.stat().st_size),
                created_at=created[:-1],
                compression="none",
                tool="deltaglider/6.1.1",
            ),
        },
    )

    for path in [*files, notes]:
        dest = tmp_path / "out" / path.name
        dest.parent.mkdir(exist_ok=True)
        got = s3_store.get(f"{ds}/{path.name}", dest)
        assert sha256_of(dest) == sha256_of(path), path.name
        assert got.kind is (Kind.DIRECT if path is notes else Kind.DELTA)
        assert got.meta.original_name == path.name
        assert got.meta.file_size == path.stat().st_size
    listed = {
        e.key: e for e in s3_store.list_files(f"{ds}/", recursive=True) if isinstance(e, Entry)
    }
    assert {k: e.original_size for k, e in listed.items()} == {
        f"{ds}/{p.name}": p.stat().st_size for p in [*files, notes]
    }


PROXY_TOOL = "deltaglider_proxy/1.19.0"


def put_proxy_deltaspace(
    s3: S3Client, bucket: str, ds: str, *, ref: Path, targets: list[Path], work: Path
) -> None:
    """A DeltaSpace as deltaglider_proxy writes it: ``dg-ref-path`` (relative to the delta's
    folder) and no ``dg-ref-key``; deltas encoded with ``-D``, whatever the reference holds."""
    created = "2026-01-01T00:00:00Z"
    put_raw(
        s3,
        bucket,
        f"{ds}/reference.bin",
        ref,
        {
            "dg-tool": PROXY_TOOL,
            "dg-original-name": "__reference__",
            "dg-source-name": f"{ds}/{ref.name}",
            "dg-file-sha256": sha256_of(ref),
            "dg-file-size": str(ref.stat().st_size),
            "dg-md5": md5_of(ref),
            "dg-created-at": created,
            "dg-note": "reference",
        },
    )
    for target in targets:
        delta = xdelta3_encode(ref, target, work / f"{target.name}.delta")
        put_raw(
            s3,
            bucket,
            f"{ds}/{target.name}.delta",
            delta,
            {
                "dg-tool": PROXY_TOOL,
                "dg-original-name": target.name,
                "dg-file-sha256": sha256_of(target),
                "dg-file-size": str(target.stat().st_size),
                "dg-created-at": created,
                "dg-ref-path": "reference.bin",
                "dg-ref-sha256": sha256_of(ref),
                "dg-delta-size": str(delta.stat().st_size),
                "dg-md5": md5_of(target),
                "dg-note": "delta",
            },
        )


def test_we_read_the_proxy_dialect_that_upstream_cannot(
    tmp_path: Path, bucket: str, s3: S3Client, s3_store: DeltaStore, upstream: Upstream
) -> None:
    # Nested, so a dg-ref-path taken as bucket-absolute would miss the reference.
    zip_ref, *zip_later = zips(tmp_path, "app", (1, 2, 3))
    put_proxy_deltaspace(
        s3, bucket, "proxy/deep/releases", ref=zip_ref, targets=zip_later, work=tmp_path
    )
    # The proxy keeps gzip references: plain xdelta3 -d (upstream's way) unpacks such a
    # reference first and cannot apply a -D delta to it, so a reader must retry with -D.
    gz_ref, *gz_later = (
        write_gzip9_tarball(tmp_path / f"tool-1.{v}.tar.gz", source_tree(v)) for v in (1, 2)
    )
    put_proxy_deltaspace(s3, bucket, "proxy/tarballs", ref=gz_ref, targets=gz_later, work=tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("proxy notes\n")
    put_raw(
        s3,
        bucket,
        f"proxy/deep/releases/{notes.name}",
        notes,
        {
            "dg-tool": PROXY_TOOL,
            "dg-original-name": notes.name,
            "dg-file-sha256": sha256_of(notes),
            "dg-file-size": str(notes.stat().st_size),
            "dg-created-at": "2026-01-01T00:00:00Z",
            "dg-md5": md5_of(notes),
            "dg-note": "passthrough",
        },
    )

    cases = [(f"proxy/deep/releases/{p.name}", p, Kind.DELTA) for p in zip_later]
    cases += [(f"proxy/tarballs/{p.name}", p, Kind.DELTA) for p in gz_later]
    cases += [(f"proxy/deep/releases/{notes.name}", notes, Kind.DIRECT)]
    for key, path, kind in cases:
        dest = tmp_path / "out" / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        got = s3_store.get(key, dest)
        assert sha256_of(dest) == sha256_of(path), key
        assert got.kind is kind, key

    # Upstream 6.2.0 requires dg-ref-key on anything that is not dg-compression: none.
    key = f"proxy/deep/releases/{zip_later[0].name}"
    done = upstream.download(key, tmp_path / "up-out" / zip_later[0].name, check=False)
    assert done.returncode != 0 and "dg-ref-key" in done.stdout + done.stderr


def test_object_without_metadata_reads_back_raw(
    tmp_path: Path, bucket: str, s3: S3Client, s3_store: DeltaStore
) -> None:
    # A .zip name with no metadata at all: a plain S3 object, not a delta, whatever its name.
    data = b"PK\x03\x04 not really a zip, and never touched by a DeltaGlider tool\n" * 50
    s3.put_object(Bucket=bucket, Key="plain/thing-1.0.zip", Body=data)
    dest = tmp_path / "thing.zip"
    got = s3_store.get("plain/thing-1.0.zip", dest)
    assert dest.read_bytes() == data
    assert got.kind is Kind.PLAIN
    assert got.sha256 == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------- names and sync


def test_non_ascii_names_round_trip_and_upstream_reads_them(
    tmp_path: Path, bucket: str, s3: S3Client, s3_store: DeltaStore, upstream: Upstream
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = [
        write_zip(src / "café-1.0.zip", source_tree(1)),
        write_zip(src / "café-1.1.zip", source_tree(2)),
        src / "日本語.txt",
    ]
    (src / "日本語.txt").write_text("こんにちは\n", encoding="utf-8")
    results = {p.name: s3_store.put(p, f"intl/{p.name}") for p in files}
    assert results["café-1.1.zip"].kind is Kind.DELTA

    for key in all_keys(s3, bucket, "intl/"):
        meta = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
        assert all(v.isascii() for v in meta.values()), (key, meta)
        name = meta.get("dg-original-name") or meta["dg-source-name"]
        assert unquote(name) in {p.name for p in files}, (key, name)
        assert name == quote(unquote(name)), f"{key}: not percent-encoded UTF-8: {name!r}"
    for path in files:
        dest = tmp_path / "ours" / path.name
        dest.parent.mkdir(exist_ok=True)
        got = s3_store.get(f"intl/{path.name}", dest)
        assert sha256_of(dest) == sha256_of(path)
        assert got.meta.original_name == path.name
    listed = [e for e in s3_store.list_files("intl/", recursive=False) if isinstance(e, Entry)]
    assert sorted(e.key for e in listed) == sorted(f"intl/{p.name}" for p in files)

    # Upstream only uses these metadata values for display; it downloads by key.
    out = tmp_path / "upstream"
    upstream.download_all((f"intl/{p.name}", out / p.name) for p in files)
    for path in files:
        assert sha256_of(out / path.name) == sha256_of(path), path.name
    assert sorted(upstream.ls("intl")) == sorted(p.name for p in files)

    # Why the percent-encoding matters: upstream itself cannot upload such a name at all.
    done = upstream.cli.run(
        "cp", str(files[0]), upstream.url("upstream-intl/café-1.0.zip"), check=False
    )
    assert done.returncode != 0 and "Non ascii" in done.stdout + done.stderr


def test_upstream_reads_what_our_sync_wrote(
    tmp_path: Path, bucket: str, s3: S3Client, ours: Cli, upstream: Upstream
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    zips(src, "app", (1, 2))
    (src / "README.txt").write_text("top\n")
    write_jar(src / "sub" / "svc-1.3.jar", source_tree(3))
    write_zip(src / "sub" / "svc-1.4.zip", source_tree(4))
    write_npm_tgz(src / "sub" / "lib-1.0.0.tgz", source_tree(1))
    (src / "sub" / "n.log").write_text("log\n")
    expected = tree_hashes(src)

    ours.run("sync", str(src), upstream.url("synced/"))
    stored = all_keys(s3, bucket)
    assert {"synced/reference.bin", "synced/sub/reference.bin"} <= stored, "two DeltaSpaces"
    assert any(k.startswith("synced/sub/") and k.endswith(".delta") for k in stored)

    out = tmp_path / "out"
    upstream.download_all((f"synced/{rel}", out / rel) for rel in expected)
    assert tree_hashes(out) == expected

    upstream.cli.run("sync", upstream.url("synced/"), f"{tmp_path / 'up-sync'}/")
    assert tree_hashes(tmp_path / "up-sync") == expected


@pytest.mark.parametrize("first_writer", ["upstream", "ours"])
def test_one_deltaspace_written_by_both_tools_in_turn(
    tmp_path: Path, s3_store: DeltaStore, upstream: Upstream, first_writer: str
) -> None:
    """A team moving over file by file: each tool deltas against the other's reference."""
    files = zips(tmp_path, "app", (1, 2, 3, 4))
    writers = ["upstream", "ours"] if first_writer == "upstream" else ["ours", "upstream"]
    for i, path in enumerate(files):
        if writers[i % 2] == "upstream":
            upstream.upload(path, "shared")
        else:
            result = s3_store.put(path, f"shared/{path.name}")
            assert result.kind is Kind.DELTA
            assert (result.reference_size > 0) == (i == 0), "only the first file is a reference"

    out = tmp_path / "upstream-out"
    upstream.download_all((f"shared/{p.name}", out / p.name) for p in files)
    for path in files:
        dest = tmp_path / "ours-out" / path.name
        dest.parent.mkdir(exist_ok=True)
        got = s3_store.get(f"shared/{path.name}", dest)
        assert got.kind is Kind.DELTA
        assert sha256_of(dest) == sha256_of(out / path.name) == sha256_of(path), path.name


# A literal '%' in a folder name: dg-ref-key is written and read as the raw key, as upstream does.


def test_percent_in_a_folder_name_written_by_upstream(
    tmp_path: Path, s3_store: DeltaStore, upstream: Upstream
) -> None:
    files = zips(tmp_path, "app", (1, 2))
    for path in files:
        upstream.upload(path, "rel%41")
    for path in files:
        dest = tmp_path / "out" / path.name
        dest.parent.mkdir(exist_ok=True)
        s3_store.get(f"rel%41/{path.name}", dest)
        assert sha256_of(dest) == sha256_of(path)


def test_percent_in_a_folder_name_written_by_us(
    tmp_path: Path, s3_store: DeltaStore, upstream: Upstream
) -> None:
    files = zips(tmp_path, "app", (1, 2))
    for path in files:
        s3_store.put(path, f"p%41/{path.name}")
    out = tmp_path / "out"
    upstream.download_all((f"p%41/{p.name}", out / p.name) for p in files)
    for path in files:
        assert sha256_of(out / path.name) == sha256_of(path)


def test_upstream_reads_the_versions_a_prune_kept(
    upstream: Upstream, s3_store: DeltaStore, tmp_path: Path
) -> None:
    """After a prune retired references (deltas re-encoded against a kept version, under
    ``.dg/refs/``), DeltaGlider 6.2.0 still rebuilds every kept version bit-exact."""
    files = write_series(tmp_path / "src", 14)
    for path in files:
        s3_store.put(path, f"builds/rel/{path.name}")

    report = Pruner(s3_store, Retention(keep_last=3)).run("builds/rel/", recursive=False)

    assert report.retired and report.references
    upstream.download_all((f"builds/rel/{p.name}", tmp_path / "up" / p.name) for p in files[-3:])
    for path in files[-3:]:
        assert sha256_of(tmp_path / "up" / path.name) == sha256_of(path)
