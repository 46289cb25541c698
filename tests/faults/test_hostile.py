"""Hostile input: object keys that try to escape a destination, lying metadata, bad config, and
a crowd of socket clients. Nothing may be written outside the chosen folder, no wrong file
may appear, and the agent keeps serving."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from dgagent.cli.main import main
from dgagent.engine.store import DeltaStore
from dgagent.errors import DgError
from dgagent.rpc import AgentClient
from dgagent.settings import EngineSettings
from dgagent.storage import S3Options, S3Storage
from tests import artifacts
from tests.agent.conftest import AgentProc, agent_config

DG_AGENT = Path(sys.executable).parent / "dg-agent"
EVIL_KEYS = ["evil/../../escape.txt", "evil/..\\..\\escape2.txt", "evil/./dot.txt", "evil//x.txt"]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_keys_that_escape_the_destination_are_refused(
    bucket: str, s3_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for key in EVIL_KEYS:
        client.put_object(Bucket=bucket, Key=key, Body=b"pwned")
    client.put_object(Bucket=bucket, Key="evil/good.txt", Body=b"fine")
    playground = tmp_path / "play"
    dest = playground / "dest"
    dest.mkdir(parents=True)
    before = files_under(tmp_path)
    for argv in (
        ["cp", "-r", f"s3://{bucket}/evil/", str(dest)],
        ["sync", f"s3://{bucket}/evil/", str(dest)],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0 and "refusing" in err and "Traceback" not in err
    caches = tmp_path / "xdg"  # dg-agent's own cache files (isolated_dirs) may appear there
    written = {p for p in files_under(tmp_path) - before if caches not in p.parents}
    assert written == {dest / "good.txt"}, written
    assert (dest / "good.txt").read_bytes() == b"fine"


def _delta_fixture(bucket: str, endpoint: str, tmp_path: Path) -> tuple[DeltaStore, Any]:
    storage = S3Storage(bucket, S3Options(endpoint_url=endpoint, checksum_when_required=True))
    store = DeltaStore(storage, settings=EngineSettings(cache_dir=tmp_path / "cache"))
    for space, versions in (("a", (0, 1)), ("b", (3,))):
        for v in versions:
            path = artifacts.write_zip(tmp_path / f"{space}{v}.zip", artifacts.source_tree(v))
            store.put(path, f"{space}/app-{v}.zip")
    return store, boto3.client("s3", endpoint_url=endpoint)


@pytest.mark.parametrize(
    "lie",
    [
        {"dg-file-size": "999999999999999999"},
        {"dg-file-sha256": "not-a-hash"},
        {"dg-file-sha256": "0" * 64},
        {"dg-ref-sha256": "f" * 64},
        {"dg-ref-path": "../b/reference.bin"},
        {"dg-ref-path": "", "dg-ref-key": "b/reference.bin"},
        {"dg-ref-path": "", "dg-ref-key": "../../../etc/passwd"},
    ],
)
def test_lying_metadata_fails_safely(
    bucket: str, s3_endpoint: str, tmp_path: Path, lie: dict[str, str]
) -> None:
    store, client = _delta_fixture(bucket, s3_endpoint, tmp_path)
    key = "a/app-1.zip.delta"
    head = client.head_object(Bucket=bucket, Key=key)
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    metadata = {**head["Metadata"], **lie}
    client.put_object(
        Bucket=bucket, Key=key, Body=body, Metadata={k: v for k, v in metadata.items() if v}
    )
    out = tmp_path / "out.zip"
    fresh = DeltaStore(store.storage, settings=EngineSettings(cache_dir=tmp_path / "fresh"))
    with pytest.raises(DgError):
        fresh.get("a/app-1.zip", out)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.zip.dg-part-*"))


@pytest.mark.parametrize(
    "config",
    [
        '[agent]\nworkers = "three"\n',
        "[agent]\nspeed = 3\n",
        "[[watch]]\ndir = 1\n",
        "[nonsense]\n",
        "not toml ===",
    ],
)
def test_a_bad_config_is_one_clear_error_and_exit_78(agent: AgentProc, config: str) -> None:
    agent.write_config(config)
    done = agent.cli("run", check=False)
    assert done.returncode == 78
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dg-agent:") and "config.toml" in lines[0]


def test_two_hundred_clients_and_bad_ones_leave_the_agent_serving(
    agent: AgentProc, tmp_path: Path
) -> None:
    agent.write_config(agent_config([]))
    agent.start()
    errors: list[BaseException] = []
    pids: list[int] = []

    def one() -> None:
        try:
            with AgentClient(agent.socket, timeout=60) as client:
                pids.append(int(client.call("status")["pid"]))
        except BaseException as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(200)]
    silent = subprocess.Popen(  # a client that subscribes and never reads
        [
            sys.executable,
            "-c",
            "import socket,sys,time; s=socket.socket(socket.AF_UNIX); "
            f's.connect({str(agent.socket)!r}); s.sendall(b\'{{"jsonrpc":"2.0","id":1,'
            '"method":"events.subscribe","params":{}}\\n\'); time.sleep(60)',
        ]
    )
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        silent.kill()
        silent.wait()
    assert not errors and len(pids) == 200
    assert agent.status()["pid"] == agent.proc.pid  # type: ignore[union-attr]


def test_restore_never_writes_outside_the_watched_folder(
    agent: AgentProc, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    folder = tmp_path / "watched" / "out"
    folder.mkdir(parents=True)
    agent.write_config(
        agent_config([{"dir": str(folder), "url": f"s3://{bucket}/rel/"}], endpoint=s3_endpoint)
    )
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=bucket, Key="rel/../../../escape.txt", Body=b"pwned"
    )
    agent.start()
    agent.wait_idle()
    before = files_under(tmp_path)
    with AgentClient(agent.socket, timeout=30) as client, pytest.raises(DgError, match="refus"):
        client.call("restore", {"url": f"s3://{bucket}/rel/../../../escape.txt"})
    assert files_under(tmp_path) == before
    assert hashlib.sha256(b"").hexdigest()  # the agent is still up:
    assert agent.status()["idle"] in (True, False)
