"""How archive-v2-store/ was made: by dg-agent at commit b5567ea, before archive-v3 existed.

    cd <a checkout of b5567ea> && PYTHONPATH=. python tests/engine/data/archive-v2-store.py OUT

Two small wheels with a changing extension module, stored with the archive codec: a compat
reference and an archive-v2 delta with an HDiffPatch part (made against the reference's expanded
form, which archive-v2 readers must still make).
"""

import sys
from pathlib import Path

from dgagent.client import open_store
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage
from tests.engine.test_archive_v2 import native_wheel


def main(out: Path) -> None:
    src = out / "src"
    src.mkdir(parents=True, exist_ok=True)
    settings = EngineSettings(cache_dir=out / "cache" / "references", codec="archive")
    store = open_store(LocalStorage(out / "store"), settings=settings)
    for v in range(2):
        path = native_wheel(src / f"nat-1.{v}-cp311-linux_x86_64.whl", v)
        print(store.put(path, f"rel/{path.name}").codec)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
