"""The main job on the embedded default: a release folder synced into a local store.

``python -m dgagent.demo [DIR]`` writes five successive versions of a sample release artifact (a
zip with deflated and stored members, and a tar of the same tree) into ``DIR/releases``, syncs the
folder into the local store ``DIR/store`` with ``dg-agent sync``, then shows what was stored and
what it saved, and reads every file back to prove it is bit-exact. No cloud account is needed.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

from dgagent.cli.main import main as cli

VERSIONS = 5


def sample_tree(version: int) -> dict[str, bytes]:
    """A release tree: source-like text, one binary, and a few files edited per version."""
    rng = random.Random(2024)
    vocabulary = [f"name{rng.randrange(5000)}" for _ in range(800)]
    tree: dict[str, bytes] = {}
    for i in range(60):
        lines = [
            f"def {rng.choice(vocabulary)}_{n}(x): return x * {rng.randrange(99)}"
            for n in range(300)
        ]
        tree[f"app/module{i:02d}.py"] = "\n".join(lines).encode()
    tree["app/engine.so"] = random.Random(7).randbytes(512 * 1024)
    for v in range(1, version + 1):
        edit = random.Random(v)
        for _ in range(3):
            name = f"app/module{edit.randrange(60):02d}.py"
            tree[name] += f"\n# fix {v}: {edit.random()}".encode()
        tree[f"app/feature_{v}.py"] = f"FEATURE = {v}\n".encode() * 200
    tree["app/VERSION"] = f"1.0.{version}\n".encode()
    return tree


def write_zip(path: Path, tree: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in sorted(tree.items()):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = (
                zipfile.ZIP_STORED if name.endswith(".so") else zipfile.ZIP_DEFLATED
            )
            z.writestr(info, data)


def write_tar(path: Path, tree: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as t:
        for name, data in sorted(tree.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))


def make_releases(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for v in range(VERSIONS):
        tree = sample_tree(v)
        # One DeltaSpace per artifact family: each folder has one reference, and a tar diffs
        # poorly against a zip.
        for sub, suffix, writer in (("", ".zip", write_zip), ("tarballs/", ".tar", write_tar)):
            path = folder / f"{sub}app-1.0.{v}{suffix}"
            path.parent.mkdir(exist_ok=True)
            writer(path, tree)
            made.append(path)
    notes = folder / "RELEASE-NOTES.txt"
    notes.write_text("".join(f"app 1.0.{v}: fixes\n" for v in range(VERSIONS)))
    return [*made, notes]


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgagent.demo", description=__doc__)
    parser.add_argument(
        "dir", nargs="?", default="demo-out", help="work folder (default: demo-out)"
    )
    args = parser.parse_args(argv)
    work = Path(args.dir).resolve()
    releases, store, restored = work / "releases", work / "store", work / "restored"
    for folder in (releases, store, restored):
        shutil.rmtree(folder, ignore_errors=True)
    store.mkdir(parents=True)
    url = f"file://{store}/releases/"

    step(f"writing {VERSIONS} versions of a sample release into {releases}")
    files = make_releases(releases)
    print(f"{len(files)} artifacts, {sum(p.stat().st_size for p in files):,} bytes")

    commands = [
        ("syncing the folder into the local store", ["sync", str(releases), url]),
        ("syncing again: nothing has changed, so nothing is sent", ["sync", str(releases), url]),
        (
            "what is stored (original size, stored size, ratio)",
            ["ls", "-r", "-h", "--summarize", url],
        ),
        ("what it saved", ["stats", url]),
        ("reading every file back and checking its SHA-256", ["verify", "-r", url]),
        ("restoring the folder from the store", ["sync", url, str(restored), "-q"]),
    ]
    for title, command in commands:
        step(f"{title}\n   $ dg-agent {' '.join(command)}")
        if cli(command) != 0:
            print(f"demo: 'dg-agent {' '.join(command)}' failed", file=sys.stderr)
            return 1
    same = all((restored / p.relative_to(releases)).read_bytes() == p.read_bytes() for p in files)
    print(f"restored {len(files)} files into {restored}: {'bit-exact' if same else 'MISMATCH'}")
    print(f"\nTry it yourself: .venv/bin/dg-agent ls -h {url}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(run())
