"""The real agent killed with kill -9 mid-upload on each real S3 server, then restarted.

A folder of 14 release artifacts (three versions each of two zip and two jar families, one family
per subfolder, and two plain files) is written before the agent starts, so its four workers take
the first files of a folder at once and race to create that folder's reference: on rclone, which
ignores ``If-None-Match``, that race let one writer overwrite the reference another had just made
deltas against (with the engine before content-addressed references, this test lost a file in
about 3 of 10 runs on rclone). The agent is killed once some files are stored, started again,
waited on until idle and stopped by its pid. Then a new DeltaStore with an empty cache must read
every file back bit-exact (tests/faults/oracle.py), and every reference a delta names, by
``dg-ref-path`` and by ``dg-ref-key``, must still hold the bytes the delta was made against.
"""

from __future__ import annotations

import hashlib
import posixpath
import random
import time
from pathlib import Path

import boto3

from dgagent.engine import keys
from dgagent.engine.metadata import Kind, parse_metadata
from dgagent.engine.store import DeltaStore
from dgagent.errors import DgError
from dgagent.settings import EngineSettings
from dgagent.storage import ObjectInfo, S3Storage
from tests import artifacts
from tests.agent.conftest import AgentProc, agent_config
from tests.conftest import ServerBucket
from tests.faults import oracle

PREFIX = "rel/"
KILLER = random.Random()
"""Picks how many files are stored (by the agent's own count) when it is killed: each run
interrupts the uploads at another point (printed, and in every failure message)."""


FAMILIES = {
    "": ("app-1.{}.zip", artifacts.write_zip, 7),
    "svc/": ("svc-2.{}.jar", artifacts.write_jar, 11),
    "lib/": ("lib-3.{}.zip", artifacts.write_zip, 23),
    "tools/": ("tool-4.{}.jar", artifacts.write_jar, 31),
}
VERSIONS = 3


def release_folder(folder: Path) -> int:
    """Write the artifacts, one family per folder; returns how many archives there are."""
    for sub, (name, write, seed) in FAMILIES.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for v in range(VERSIONS):
            write(folder / sub / name.format(v), artifacts.source_tree(v, seed=seed))
    (folder / "README.txt").write_text("release notes\n" * 40)
    (folder / "lib" / "notes.txt").write_text("lib notes\n")
    return len(FAMILIES) * VERSIONS


def check_references(store: DeltaStore, work: Path) -> int:
    """Every delta's reference, wherever it names one (``dg-ref-path`` and ``dg-ref-key``), holds
    the bytes of ``dg-ref-sha256``, by a hash of its body; returns the number of deltas."""
    storage = store.storage
    deltas = 0
    for obj in storage.list_objects(PREFIX):
        if not isinstance(obj, ObjectInfo) or not keys.is_delta(obj.key):
            continue
        head = storage.head(obj.key)
        assert head is not None, obj.key
        meta = parse_metadata(obj.key, head.metadata or {})
        if meta.kind is not Kind.DELTA:
            continue
        deltas += 1
        assert meta.ref_key and meta.ref_path, f"{obj.key}: {head.metadata}"
        by_path = posixpath.normpath(posixpath.join(keys.deltaspace_of(obj.key), meta.ref_path))
        assert by_path == meta.ref_key, f"{obj.key}: dg-ref-path and dg-ref-key disagree"
        body = work / "ref-body"
        with body.open("wb") as out:
            storage.download(meta.ref_key, out)
        got = hashlib.sha256(body.read_bytes()).hexdigest()
        assert got == meta.ref_sha256, f"{obj.key}: its reference {meta.ref_key} was replaced"
    return deltas


def test_kill_9_mid_upload_on_a_real_server(
    agent: AgentProc, server_bucket: ServerBucket, tmp_path: Path
) -> None:
    sb = server_bucket
    folder = tmp_path / "out"
    archives = release_folder(folder)
    total = sum(1 for p in folder.rglob("*") if p.is_file())
    agent.write_config(
        agent_config(
            [{"dir": str(folder), "url": f"s3://{sb.bucket}/{PREFIX}"}],
            endpoint=sb.endpoint,
            workers=4,
        )
    )
    kill_after = KILLER.randint(1, total // 2)
    agent.start()
    deadline = time.monotonic() + 60
    while (status := agent.status())["done"] < kill_after:
        assert time.monotonic() < deadline, f"{kill_after} files never stored\n{agent.log_text()}"
        time.sleep(0.02)
    agent.kill()
    when = f"{sb.name}: killed with {status['done']} of {total} files stored"
    print(f"{when}, {status['uploading']} uploading")
    assert status["done"] < total, f"{when}: the agent finished first, nothing was interrupted"

    agent.start()
    status = agent.wait_idle(60)
    assert agent.stop() == 0
    assert status["failed"] == 0, f"{when}: {status}"
    assert status["done"] == total, f"{when}: {status}"

    cache = tmp_path / "oracle-cache"
    storage = S3Storage(sb.bucket, sb.options)
    store = DeltaStore(storage, settings=EngineSettings(cache_dir=cache))
    assert not cache.exists() or not any(cache.iterdir()), "the reader's cache is not cold"
    try:
        oracle.check(store, folder, PREFIX, tmp_path, index=oracle_index(agent))
        deltas = check_references(store, tmp_path)
    except (AssertionError, DgError) as exc:
        raise AssertionError(f"{when}: {exc}\n{agent.log_text()}") from exc
    # Precondition: deltas were made (else no reference was at stake).
    assert deltas >= archives // 2, f"only {deltas} of {archives} archives stored as deltas"
    s3 = boto3.client("s3", endpoint_url=sb.endpoint)
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=sb.bucket).get("Contents", [])}
    print(f"{sb.name}: {len(stored)} objects, {deltas} deltas: {sorted(stored)}")


def oracle_index(agent: AgentProc) -> Path:
    return agent.home / "state" / "dg-agent" / "index.db"
