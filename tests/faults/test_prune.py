"""A prune killed with kill -9 at random moments, and a prune racing a writer: no kept file and
no newly written file is ever lost, on a local folder and on moto.

The kill moments are drawn from the length of one uninterrupted prune of the same series, timed
from its first line of output (the listing is done by then), so they fall in every phase after
it: re-encoding, storing the new reference and deltas, checking them, deleting; each is printed.
After each kill the kept versions are read back from the store through a cold cache, then a
second prune runs to the end and must leave exactly the kept versions, all readable.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dgagent.engine.prune import reclaimable
from dgagent.engine.store import DeltaStore
from dgagent.settings import EngineSettings
from dgagent.storage.base import Storage
from tests.artifacts import write_series

KILLER = random.Random()
ROUNDS = 6
VERSIONS = 16
KEEP = 4
PRUNE = ("prune", "--keep-last", str(KEEP))
DG_AGENT = Path(sys.executable).with_name("dg-agent")


def command(url: str, backend: tuple[Storage, str], *args: str) -> list[str]:
    argv = [str(DG_AGENT), *args, url]
    endpoint = getattr(backend[0], "options", None)
    if endpoint is not None and endpoint.endpoint_url:
        argv += ["--endpoint-url", endpoint.endpoint_url]
    return argv


def started_prune(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """A prune started and past its listing (it has printed its first step)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline(), "the prune printed nothing"
    return proc


def cold_store(storage: Storage, tmp_path: Path) -> DeltaStore:
    """A store whose reference cache is empty: every read goes to the stored objects."""
    cache = tmp_path / f"cold-{time.monotonic_ns()}" / "references"
    return DeltaStore(storage, settings=EngineSettings(cache_dir=cache))


def assert_readable(storage: Storage, tmp_path: Path, space: str, files: list[Path]) -> None:
    store = cold_store(storage, tmp_path)
    for path in files:
        out = tmp_path / "check" / path.name
        out.parent.mkdir(exist_ok=True)
        store.get(f"{space}/{path.name}", out)
        assert out.read_bytes() == path.read_bytes(), f"{space}/{path.name} reads back wrong"


def test_kill_9_at_random_moments_of_a_prune_never_loses_a_kept_file(
    backend: tuple[Storage, str], tmp_path: Path, settings: EngineSettings
) -> None:
    storage, root = backend
    store = DeltaStore(storage, settings=settings)
    files = write_series(tmp_path / "src", VERSIONS)
    env = dict(os.environ, DG_CACHE_DIR=str(tmp_path / "agent-cache"), PYTHONUNBUFFERED="1")
    for path in files:
        store.put(path, f"calibrate/{path.name}")
    calibration = started_prune(command(f"{root}/calibrate/", backend, *PRUNE), env)
    started = time.monotonic()
    assert calibration.wait() == 0
    whole = time.monotonic() - started
    interrupted = 0
    for round_ in range(ROUNDS):
        space = f"r{round_}"
        for path in files:
            store.put(path, f"{space}/{path.name}")
        delay = KILLER.uniform(0, whole)
        argv = command(f"{root}/{space}/", backend, *PRUNE)
        proc = started_prune(argv, env)
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.kill()
        proc.wait()
        interrupted += not finished
        when = f"round {round_}: killed after {delay:.2f} s of a {whole:.2f} s prune"
        print(when + (" (it had finished)" if finished else ""))

        assert_readable(storage, tmp_path, space, files[-KEEP:])
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        assert_readable(storage, tmp_path, space, files[-KEEP:])
        listing = store.listing(f"{space}/", recursive=False)
        assert sorted(e.key for e in listing.files) == sorted(
            f"{space}/{p.name}" for p in files[-KEEP:]
        ), when
        assert reclaimable(listing.files, listing.objects).total == 0, when
    print(f"{interrupted} of {ROUNDS} prunes were killed before they finished")
    assert interrupted >= 1, "no kill landed inside a prune; the timing calibration is off"


@pytest.mark.parametrize("round_", range(2))
def test_a_prune_racing_a_writer_leaves_every_file_readable(
    backend: tuple[Storage, str], tmp_path: Path, settings: EngineSettings, round_: int
) -> None:
    storage, root = backend
    store = DeltaStore(storage, settings=settings)
    old = write_series(tmp_path / "old", VERSIONS)
    new = write_series(tmp_path / "new", 4, start=VERSIONS)
    for path in old:
        store.put(path, f"rel/{path.name}")
    env = dict(os.environ, DG_CACHE_DIR=str(tmp_path / "cache-prune"))
    writer_env = dict(os.environ, DG_CACHE_DIR=str(tmp_path / "cache-writer"))

    prune = subprocess.Popen(
        command(f"{root}/rel/", backend, "prune", "--json", "--keep-last", str(KEEP)),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    if round_:
        time.sleep(KILLER.uniform(0.1, 0.8))
    writer = subprocess.Popen(
        command(f"{root}/rel/", backend, "cp", "-r", "-q", str(tmp_path / "new") + "/"),
        env=writer_env,
    )
    assert writer.wait(timeout=120) == 0
    out, _ = prune.communicate(timeout=120)
    assert prune.returncode == 0
    deleted = {url.rsplit("/", 1)[1] for url in json.loads(out)["deleted"]}

    # New versions the prune listed are the newest, so they stay: the versions it deleted are
    # old ones (the last KEEP of them too, when new ones were listed before them).
    assert not deleted & {p.name for p in new}
    stays = [p for p in old[-KEEP:] if p.name not in deleted] + new
    assert_readable(storage, tmp_path, "rel", stays)
    # And whatever else is still listed reads back as the bytes it was stored from.
    sources = {p.name: p for p in old + new}
    listed = [e.key.rsplit("/", 1)[1] for e in store.listing("rel/", recursive=False).files]
    assert_readable(storage, tmp_path, "rel", [sources[name] for name in listed])
