"""Fault scenarios: the agent killed, the server failing, the folder misbehaving.

Each one ends with the same oracle (tests/faults/oracle.py): every local file reads back
bit-exact, nothing stored that never existed, no open multipart upload, no delta without its
reference, a sound index.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest

from dgagent.engine.store import DeltaStore
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage, S3Options, S3Storage
from tests import artifacts
from tests.agent.conftest import AgentProc, agent_config
from tests.faults import oracle
from tests.faults.proxy import FaultProxy, Rule

MIB = 1024 * 1024


def s3_store(bucket: str, endpoint: str, tmp_path: Path) -> DeltaStore:
    storage = S3Storage(bucket, S3Options(endpoint_url=endpoint, checksum_when_required=True))
    return DeltaStore(storage, settings=EngineSettings(cache_dir=tmp_path / "oracle-cache"))


def index_of(agent: AgentProc) -> Path:
    return agent.home / "state" / "dg-agent" / "index.db"


def multipart_config(folder: Path, bucket: str, proxy: FaultProxy) -> str:
    text = agent_config([{"dir": str(folder), "url": f"s3://{bucket}/big/"}], endpoint=proxy.url)
    extra = f"multipart_threshold = {5 * MIB}\npart_size = {5 * MIB}\n"
    return text.replace(
        "checksum_when_required = true\n", "checksum_when_required = true\n" + extra
    )


def test_kill_9_during_a_multipart_upload_then_restart(
    agent: AgentProc, proxy: FaultProxy, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    config = multipart_config(folder, bucket, proxy)
    agent.write_config(config)
    big = folder / "image.bin"
    big.write_bytes(os.urandom(30 * MIB))  # not delta-eligible: a direct multipart upload
    proxy.set_rules(Rule(ops=("PART",), latency=1.5))  # slow parts, so we can kill mid-upload
    agent.start()
    agent.wait_for(lambda: proxy.sent["PART"] >= 5 * MIB, what="a part to be sent")
    agent.kill()
    time.sleep(2.0)  # parts the proxy still held when the agent died reach the server now
    sent_before = proxy.sent["PART"] + proxy.sent["PUT"]
    proxy.set_rules()
    agent.start()
    status = agent.wait_idle(120)
    resent = proxy.sent["PART"] + proxy.sent["PUT"] - sent_before
    print(f"bytes sent before kill -9: {sent_before}, after restart: {resent} of {30 * MIB}")
    assert status["done"] == 1 and status["failed"] == 0
    assert resent >= 30 * MIB  # redone whole (not resumed): the report says how much
    oracle.check(
        s3_store(bucket, s3_endpoint, tmp_path), folder, "big/", tmp_path, index=index_of(agent)
    )


def test_slowdown_and_a_stall_then_convergence(
    agent: AgentProc, proxy: FaultProxy, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    agent.write_config(
        agent_config(
            [{"dir": str(folder), "url": f"s3://{bucket}/rel/"}], endpoint=proxy.url, workers=3
        )
    )
    proxy.set_rules(Rule(ops=("PUT",), status=503))  # every upload throttled, for now
    agent.start()
    for v in range(4):
        artifacts.write_zip(folder / f"app-{v}.zip", artifacts.source_tree(v))
    for n in range(20):
        (folder / f"n{n}.txt").write_text(f"note {n}\n")
    agent.wait_for(lambda: agent.status()["retrying"] > 0, what="backoff to show in status")
    queue = agent.call("queue", {"state": "queued"})["items"]
    assert any(
        "SlowDown" in (item["error"] or "") or "503" in (item["error"] or "") for item in queue
    ), queue
    proxy.set_rules(
        Rule(ops=("PUT",), stall=20.0, times=1),
        Rule(ops=("*",), status=503, probability=0.3),
    )
    started = time.monotonic()
    status = agent.wait_idle(240)
    print(
        f"converged {time.monotonic() - started:.1f} s after the 503 storm; injected "
        f"{sum(proxy.faults.values())} faults over {sum(proxy.seen.values())} requests; agent "
        f"made {status['requests']['total']} requests"
    )
    assert status["failed"] == 0 and status["done"] == 24
    proxy.set_rules()
    oracle.check(
        s3_store(bucket, s3_endpoint, tmp_path), folder, "rel/", tmp_path, index=index_of(agent)
    )


def test_a_permanent_403_on_one_watch_while_the_other_syncs(
    agent: AgentProc, proxy: FaultProxy, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    agent.write_config(
        agent_config(
            [
                {"dir": str(good), "url": f"s3://{bucket}/good/"},
                {"dir": str(bad), "url": f"s3://{bucket}/denied/"},
            ],
            endpoint=proxy.url,
        )
    )
    proxy.set_rules(Rule(path=f"/{bucket}/denied", status=403))
    agent.start()
    for n in range(5):
        (good / f"g{n}.txt").write_text(f"good {n}\n")
        (bad / f"b{n}.txt").write_text(f"bad {n}\n")
    status = agent.wait_idle(60)
    assert status["done"] == 5 and status["failed"] == 5
    notes = {w["dir"]: w["note"] for w in status["watches"]}
    assert "access denied" in (notes[str(bad)] or "").lower()
    assert notes[str(good)] is None
    oracle.check(s3_store(bucket, s3_endpoint, tmp_path), good, "good/", tmp_path)
    # the failures are not retried in a loop
    requests = status["requests"]["total"]
    time.sleep(3)
    assert agent.status()["requests"]["total"] == requests


@pytest.mark.parametrize("mirror", [True, False])
def test_renames_of_a_file_and_of_a_folder_of_1000_files(
    agent: AgentProc, tmp_path: Path, mirror: bool
) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    agent.write_config(
        agent_config(
            [{"dir": str(folder), "url": f"file://{root}/rel/", "delete": mirror}], workers=4
        )
    )
    batch = folder / "batch"
    batch.mkdir()
    for n in range(1000):
        (batch / f"f{n:04d}.txt").write_text(f"{n}\n")
    artifacts.write_zip(folder / "app-1.0.zip", artifacts.source_tree(0))
    agent.start()
    agent.wait_idle(180)
    history = {
        p.relative_to(folder).as_posix(): {oracle.sha256(p)}
        for p in folder.rglob("*")
        if p.is_file()
    }
    (folder / "app-1.0.zip").rename(folder / "app-1.0-final.zip")
    batch.rename(folder / "renamed")
    time.sleep(1.0)
    status = agent.wait_idle(180)
    assert status["failed"] == 0
    store = DeltaStore(LocalStorage(root), settings=EngineSettings(cache_dir=tmp_path / "c"))
    oracle.check(store, folder, "rel/", tmp_path, index=index_of(agent), history=history)
    keys = {getattr(e, "key", "") for e in store.list_files("rel/", recursive=True)}
    assert ("rel/batch/f0000.txt" in keys) is not mirror
    assert ("rel/app-1.0.zip" in keys) is not mirror


def test_the_watch_root_deleted_and_recreated_by_a_build(agent: AgentProc, tmp_path: Path) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    agent.write_config(
        agent_config([{"dir": str(folder), "url": f"file://{root}/rel/", "delete": True}])
    )
    for v in range(3):
        artifacts.write_zip(folder / f"app-1.{v}.zip", artifacts.source_tree(v))
    agent.start()
    agent.wait_idle()
    shutil.rmtree(folder)  # a clean build starts by removing its output folder...
    time.sleep(2.0)
    agent.call("rescan")
    agent.wait_idle()
    store = DeltaStore(LocalStorage(root), settings=EngineSettings(cache_dir=tmp_path / "c"))
    assert len([e for e in store.list_files("rel/", recursive=True)]) == 3  # nothing deleted
    folder.mkdir()  # ...and writes everything again, plus a new version
    for v in range(4):
        artifacts.write_zip(folder / f"app-1.{v}.zip", artifacts.source_tree(v))
    agent.wait_for(
        lambda: agent.status()["watches"][0]["state"] == "watching",
        what="the root to be watched again",
    )
    status = agent.wait_idle()
    assert status["failed"] == 0, agent.log_text()
    oracle.check(store, folder, "rel/", tmp_path, index=index_of(agent))


@pytest.mark.parametrize(
    "size",
    [
        pytest.param((2, 300), id="short"),
        pytest.param((24, 1000), id="long", marks=pytest.mark.slow),
    ],
)
def test_kill_9_at_random_moments_in_a_burst(
    agent: AgentProc, bucket: str, s3_endpoint: str, tmp_path: Path, size: tuple[int, int]
) -> None:
    """Each round writes a burst (new files and new versions of old ones), kills the agent at a
    random moment, restarts it; at the end the oracle must hold and a second pass sends nothing."""
    iterations, files = size
    rng = random.Random(2026)
    folder = tmp_path / "out"
    folder.mkdir()
    agent.write_config(
        agent_config(
            [{"dir": str(folder), "url": f"s3://{bucket}/burst/"}], endpoint=s3_endpoint, workers=4
        )
    )
    history: dict[str, set[str]] = {}
    agent.start()
    for round_ in range(iterations):
        for n in range(files):
            rel = f"d{n % 7}/f{n:04d}.txt" if n % 50 else f"app-{n % 3}.zip"
            path = folder / rel
            path.parent.mkdir(exist_ok=True)
            if rel.endswith(".zip"):
                artifacts.write_zip(path, artifacts.source_tree(round_ + n % 3))
            else:
                path.write_text(f"round {round_} file {n}\n" * (1 + n % 5))
            history.setdefault(rel, set()).add(oracle.sha256(path))
        time.sleep(rng.uniform(0.2, 3.0))
        agent.kill()
        agent.start()
    status = agent.wait_idle(600)
    assert status["failed"] == 0, agent.call("queue", {"state": "failed"})["items"]
    store = s3_store(bucket, s3_endpoint, tmp_path)
    oracle.check(store, folder, "burst/", tmp_path, index=index_of(agent), history=history)
    sent = status["requests"].get("PutObject", 0)
    agent.call("rescan")
    time.sleep(1.0)
    assert agent.wait_idle()["requests"].get("PutObject", 0) == sent  # nothing sent again
