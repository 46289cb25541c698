"""The main job on the embedded default: the agent keeps a release folder in a local store.

``python -m dgagent.demo [DIR]`` starts the agent (with private config and state dirs under
``DIR/xdg``) watching ``DIR/releases`` and storing into the local store ``DIR/store``, writes five
successive versions of a sample release (a zip with deflated and stored members, and a tar of the
same tree) into the folder as a build would, waits until the agent has stored them, then shows
the agent's status, what was stored and saved, and verifies every file. No cloud account needed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import sys
import tarfile
import time
import zipfile
from pathlib import Path

from dgagent.agent.client import AgentClient, AgentNotRunning
from dgagent.agent.paths import agent_paths
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


def write_version(folder: Path, version: int) -> list[Path]:
    """One release: a zip, and a tar of the same tree in its own DeltaSpace (each folder has one
    reference, and a tar diffs poorly against a zip). Written under a temp name and renamed, as
    build tools do."""
    tree = sample_tree(version)
    made = []
    for sub, suffix, writer in (("", ".zip", write_zip), ("tarballs/", ".tar", write_tar)):
        path = folder / f"{sub}app-1.0.{version}{suffix}"
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(path.name + ".part")
        writer(partial, tree)
        partial.rename(path)
        made.append(path)
    return made


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def demo_environment(work: Path) -> dict[str, str]:
    """Private config/state/cache/runtime dirs, so the demo agent is not the user's agent."""
    xdg = work / "xdg"
    return {
        "XDG_CONFIG_HOME": str(xdg / "config"),
        "XDG_STATE_HOME": str(xdg / "state"),
        "XDG_CACHE_HOME": str(xdg / "cache"),
        "DG_CACHE_DIR": str(xdg / "cache" / "references"),
        # Unix socket paths are short (~104 bytes): keep the runtime dir under /tmp.
        "XDG_RUNTIME_DIR": f"/tmp/dg-agent-demo-{os.getuid()}",  # noqa: S108 (the agent refuses a dir it does not own)
    }


def dg(*argv: str) -> None:
    print(f"   $ dg-agent {' '.join(argv)}", flush=True)
    code = cli(list(argv))
    if code != 0:
        raise SystemExit(f"demo: 'dg-agent {' '.join(argv)}' failed (exit code {code})")


def wait_idle(timeout: float = 120.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        with AgentClient(agent_paths().socket) as client:
            status: dict[str, object] = client.call("status")
        streak = streak + 1 if status["idle"] else 0
        if streak >= 2:
            return status
        time.sleep(0.3)
    raise SystemExit("demo: the agent did not finish in time; see dg-agent status")


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgagent.demo", description=__doc__)
    parser.add_argument("dir", nargs="?", default="demo-out", help="work folder")
    parser.add_argument("--stop", action="store_true", help="stop the demo agent at the end")
    args = parser.parse_args(argv)
    work = Path(args.dir).resolve()
    env = demo_environment(work)
    os.environ.update(env)
    Path(env["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)
    releases, store = work / "releases", work / "store"
    with contextlib.suppress(AgentNotRunning):  # a demo agent left running by an earlier run
        cli(["stop"])
    for folder in (releases, store, work / "xdg"):
        shutil.rmtree(folder, ignore_errors=True)
    releases.mkdir(parents=True)
    store.mkdir(parents=True)
    url = f"file://{store}/releases/"
    (work / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))

    step("starting the agent on the embedded local store, watching the release folder")
    dg("watch", "add", str(releases), url)
    dg("start")

    step(f"a build writes {VERSIONS} versions of a release into {releases}")
    files = []
    for v in range(VERSIONS):
        files.extend(write_version(releases, v))
        print(f"   wrote app-1.0.{v}.zip and tarballs/app-1.0.{v}.tar", flush=True)
        time.sleep(0.5)
    notes = releases / "RELEASE-NOTES.txt"
    notes.write_text("".join(f"app 1.0.{v}: fixes\n" for v in range(VERSIONS)))
    files.append(notes)
    wait_idle()

    step("what the agent did")
    dg("status")
    step("what is stored (original size, stored size, ratio)")
    dg("ls", "-r", "-h", "--summarize", url)
    step("what it saved")
    dg("stats", url)
    step("reading every file back and checking its SHA-256")
    dg("verify", "-r", url)

    if args.stop:
        dg("stop")
    else:
        print(f"\nThe agent keeps running: write more files into {releases} and watch them")
        print(f"go through in the terminal UI. In another terminal: source {work / 'env.sh'}")
        print("  .venv/bin/dg-tui              # live queue, ratios, browse/restore/verify")
        print("  .venv/bin/dg-agent status     # and, to end the demo: .venv/bin/dg-agent stop")
    return 0


if __name__ == "__main__":
    sys.exit(run())
