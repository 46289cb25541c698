"""How archive-v1-store/ was made: by dg-agent at commit 5556eb7, before archive-v2 existed.

    python tests/engine/data/archive-v1-store.py OUT_DIR   (run with that commit's dgagent)

Two small wheels, stored with the archive codec: a compat reference and an archive-v1 delta.
"""

import random
import sys
import zipfile
from pathlib import Path

from dgagent.client import open_store
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage

STAMP = (2024, 1, 1, 0, 0, 0)


def member(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = [f"w{rng.randrange(5000)}" for _ in range(300)]
    return " ".join(rng.choice(words) for _ in range(size // 5)).encode()[:size]


def wheel(path: Path, v: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(6):
            data = member(i, 8000)
            if i == v + 2:
                data = f"# v{v}\n".encode() + data
            z.writestr(zipfile.ZipInfo(f"pkg/mod{i}.py", STAMP), data, zipfile.ZIP_DEFLATED)
        meta = f"Name: pkg\nVersion: 1.{v}\n"
        z.writestr(zipfile.ZipInfo("pkg-1.0.dist-info/METADATA", STAMP), meta, zipfile.ZIP_DEFLATED)


def main(out: Path) -> None:
    src = out / "src"
    src.mkdir(exist_ok=True)
    settings = EngineSettings(cache_dir=out / "cache" / "references", codec="archive")
    store = open_store(LocalStorage(out / "store"), settings=settings)
    for v in range(2):
        path = src / f"pkg-1.{v}-py3-none-any.whl"
        wheel(path, v)
        print(store.put(path, f"rel/{path.name}").codec)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
