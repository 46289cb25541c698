"""Files are streamed: storing and restoring a large file never holds it in memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SIZE = 160 * 1024 * 1024

SCRIPT = r"""
import json, resource, sys
from pathlib import Path
from dgagent.engine.store import DeltaStore
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage

work = Path(sys.argv[1])
store = DeltaStore(LocalStorage(work / "store"), settings=EngineSettings(cache_dir=work / "cache"))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
first = store.put(work / "v1.tar", "rel/v1.tar")
second = store.put(work / "v2.tar", "rel/v2.tar")
got = store.get("rel/v2.tar", work / "back.tar")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "kind": second.kind.value,
                  "stored": second.stored_size, "sha": got.sha256}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_large_files_do_not_grow_memory(tmp_path: Path) -> None:
    block = os.urandom(1024 * 1024)
    with (tmp_path / "v1.tar").open("wb") as a, (tmp_path / "v2.tar").open("wb") as b:
        for i in range(SIZE // len(block)):
            chunk = block[i % 7 :] + block[: i % 7]
            a.write(chunk)
            b.write(chunk if i != 40 else os.urandom(len(chunk)))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout)
    assert report["kind"] == "delta" and report["stored"] < 4 * 1024 * 1024
    assert (tmp_path / "back.tar").stat().st_size == SIZE
    # The python process (xdelta3 runs as a child) must not have grown by anything near the
    # file size: 160 MiB files, under 48 MiB of growth.
    assert report["growth_kib"] < 48 * 1024, report
