"""S3-compatible servers that lack a feature we use: the engine must still keep every file.

The fault proxy plays such a server in front of the S3 emulator by refusing a request that carries
a given header with ``501 NotImplemented``, as AWS itself did for ``If-None-Match`` before 2024.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from dgagent.engine.store import DeltaStore
from dgagent.errors import PreconditionFailedError, UnsupportedError
from dgagent.settings import EngineSettings
from dgagent.storage import S3Options, S3Storage
from tests import artifacts
from tests.faults.proxy import FaultProxy, Rule

MIB = 1024 * 1024


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def storage(bucket: str, proxy: FaultProxy, *, threshold: int = 64 * MIB) -> S3Storage:
    options = S3Options(
        endpoint_url=proxy.url,
        checksum_when_required=True,
        multipart_threshold=threshold,
        part_size=5 * MIB,
    )
    return S3Storage(bucket, options)


@pytest.mark.parametrize("size", ["small", "multipart"])
def test_a_server_without_conditional_writes_still_gets_every_file(
    bucket: str, proxy: FaultProxy, tmp_path: Path, size: str
) -> None:
    """The probe meets 501; references go to content-addressed keys and every file is kept."""
    proxy.set_rules(Rule(ops=("PUT", "POST"), header="if-none-match", status=501))
    target = storage(bucket, proxy, threshold=5 * MIB if size == "multipart" else 64 * MIB)
    store = DeltaStore(target, settings=EngineSettings(cache_dir=tmp_path / "cache"))
    blob = random.Random(3).randbytes(6 * MIB if size == "multipart" else 64 * 1024)
    files = []
    for v in range(3):
        tree = {**artifacts.source_tree(v), "pkg/blob.bin": blob}
        files.append(artifacts.write_zip(tmp_path / f"app-1.{v}.zip", tree, stored=(".bin",)))
    results = [store.put(f, f"rel/{f.name}") for f in files]

    assert not target.honours_create_only(1)
    assert target.write_mode() == "conditional writes ignored"
    assert proxy.faults["PUT"] + proxy.faults["POST"] == 1  # asked once, then never again
    ref_key = f"rel/.dg/refs/{sha(files[0])}/reference.bin"
    assert target.head("rel/reference.bin") is None
    assert target.head(ref_key) is not None
    assert [r.kind.value for r in results] == ["delta", "delta", "delta"]
    reader = DeltaStore(
        storage(bucket, proxy), settings=EngineSettings(cache_dir=tmp_path / "reader")
    )
    for f in files:
        out = tmp_path / "out" / f.name
        out.parent.mkdir(exist_ok=True)
        assert reader.get(f"rel/{f.name}", out).sha256 == sha(f)

    # A create of a key that exists is refused without overwriting it.
    before = target.head(ref_key)
    with pytest.raises(PreconditionFailedError, match="already exists"):
        target.upload(ref_key, files[2], {}, create_only=True)
    after = target.head(ref_key)
    assert before is not None and after is not None and after.etag == before.etag


def test_other_not_implemented_answers_are_clear_errors(
    bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    """A 501 on a plain write is not mistaken for the conditional-write case."""
    proxy.set_rules(Rule(ops=("PUT",), status=501))
    target = storage(bucket, proxy)
    path = tmp_path / "notes.txt"
    path.write_text("notes\n")
    store = DeltaStore(target, settings=EngineSettings(cache_dir=tmp_path / "cache"))
    with pytest.raises(UnsupportedError, match="does not implement"):
        store.put(path, "rel/notes.txt")
