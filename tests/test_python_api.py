"""The public Python API: ``dgagent.Client`` on a local store and on S3 (moto over HTTP), and the
example of docs/python-api.md, run as written."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dgagent
from dgagent import Client, ConfigError, IntegrityError, NotFoundError
from dgagent.engine.metadata import Kind
from tests.artifacts import source_tree, write_series, write_zip

ROOT = Path(__file__).resolve().parent.parent


def releases(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for version in range(1, count + 1):
        path = write_zip(folder / f"app-1.{version}.zip", source_tree(version))
        os.utime(path, (1_700_000_000 + version, 1_700_000_000 + version))  # release order
        made.append(path)
    return made


def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "python-api.md").read_text()
    example = re.search(r"## An example.*?```python\n(.*?)```", text, re.S)
    assert example is not None, "docs/python-api.md lost its example"
    script = tmp_path / "example.py"
    script.write_text(example.group(1))
    done = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "synced ['app-1.3.zip'] unchanged 2" in done.stdout
    assert "does not exist" in done.stdout  # the deleted file's NotFoundError


def exercise(client: Client, tmp_path: Path) -> None:
    """Every method once, on whichever store the client names."""
    one, two, three = releases(tmp_path / "dist", 3)
    first = client.put(one, "rel/")
    assert first.key.endswith("rel/app-1.1.zip")
    second = client.put(two, "rel/")
    assert second.kind is Kind.DELTA and second.ratio < 0.5

    synced = client.sync(tmp_path / "dist", "rel/")
    assert [r.key.rpartition("/")[2] for r in synced.stored] == ["app-1.3.zip"]
    assert synced.unchanged == 2
    assert client.sync(tmp_path / "dist", "rel/").stored == []  # twice: nothing to do

    listed = {e.key.rpartition("/")[2]: e for e in client.list("rel/")}
    assert sorted(listed) == ["app-1.1.zip", "app-1.2.zip", "app-1.3.zip"]
    assert listed["app-1.3.zip"].original_size == three.stat().st_size
    assert client.stat("rel/app-1.2.zip").original_size == two.stat().st_size

    stream = io.BytesIO()
    got = client.get("rel/app-1.2.zip", stream)
    assert stream.getvalue() == two.read_bytes() and got.size == two.stat().st_size
    (tmp_path / "out").mkdir()
    client.get("rel/app-1.3.zip", tmp_path / "out")  # a folder keeps the name
    assert (tmp_path / "out" / "app-1.3.zip").read_bytes() == three.read_bytes()
    assert client.verify("rel/app-1.1.zip").sha256 == first.sha256

    summary = client.stats("rel/")
    assert summary.files == 3
    assert summary.original_bytes == sum(p.stat().st_size for p in (one, two, three))
    assert 0 < summary.stored_bytes < summary.original_bytes / 2

    deleted = client.delete("rel/app-1.1.zip", "rel/app-1.2.zip")
    assert len(deleted) == 2
    with pytest.raises(NotFoundError):
        client.stat("rel/app-1.1.zip")
    with pytest.raises(FileNotFoundError):  # the builtin catches it too
        client.get("rel/app-1.2.zip", io.BytesIO())
    assert [e.key.rpartition("/")[2] for e in client.list("rel/")] == ["app-1.3.zip"]


def test_client_on_a_local_store(tmp_path: Path) -> None:
    exercise(Client(f"file://{tmp_path}/store/", cache_dir=tmp_path / "cache"), tmp_path)


def test_client_on_s3(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    client = Client(f"s3://{bucket}/api/", endpoint_url=s3_endpoint, cache_dir=tmp_path / "c")
    exercise(client, tmp_path)
    # Full URLs work without a base, and see the same files.
    bare = Client(endpoint_url=s3_endpoint, cache_dir=tmp_path / "c")
    assert [e.key for e in bare.list(f"s3://{bucket}/api/rel/")] == ["api/rel/app-1.3.zip"]


def test_a_corrupt_file_never_reaches_the_stream(tmp_path: Path) -> None:
    client = Client(f"file://{tmp_path}/store/", cache_dir=tmp_path / "cache")
    (tmp_path / "notes.txt").write_text("release notes\n")
    result = client.put(tmp_path / "notes.txt")
    stored = Path("/" + result.stored_key)
    stored.write_text("release notez\n")  # same size, other bytes
    stream = io.BytesIO()
    with pytest.raises(IntegrityError):
        client.get("notes.txt", stream)
    assert stream.getvalue() == b""


def test_bad_options_and_keys_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_ratio must be a number between 0 and 1"):
        Client(max_ratio=2.0)
    with pytest.raises(ConfigError, match="has no store URL"):
        Client(cache_dir=tmp_path).stat("a.zip")
    with pytest.raises(ConfigError, match="not a store URL"):
        Client("ftp://host/x/")


def test_everything_exported_is_there() -> None:
    for name in dgagent.__all__:
        assert getattr(dgagent, name) is not None


def test_prune_keeps_the_newest_and_gives_space_back(tmp_path: Path) -> None:
    files = write_series(tmp_path / "src", 8)
    client = Client(f"file://{tmp_path}/store/", cache_dir=tmp_path / "cache")
    client.sync(tmp_path / "src", "rel/")
    before = client.stats("rel/").stored_bytes

    dry = client.prune("rel/", keep_last=2, dryrun=True)
    report = client.prune("rel/", keep_last=2)

    assert dry.stored_after == report.stored_after == client.stats("rel/").stored_bytes < before
    assert (
        [e.key for e in client.list("rel/")]
        == [e.key for e in report.kept]
        == [f"{tmp_path.as_posix().lstrip('/')}/store/rel/{p.name}" for p in files[-2:]]
    )
    with pytest.raises(ConfigError, match="90d"):
        client.prune("rel/", older_than="soon")
