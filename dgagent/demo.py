"""The main job on the embedded default: the agent keeps a release folder in a local store.

``python -m dgagent.demo [DIR]`` starts the agent (with private config and state dirs under
``DIR/xdg``) watching ``DIR/releases`` and storing into the local store ``DIR/store``, writes five
(``--versions``) successive versions of a sample release (a zip with deflated and stored members,
and a tar of the same tree) into the folder as a build would, waits until the agent has stored
them, then shows the agent's status, what was stored and saved, and verifies every file. No cloud
account needed.

``DIR/env.sh`` points a shell at the demo's agent: sourced from any folder, it puts this
dg-agent's bin folder first on PATH and sets the demo's private dirs. A second run stops the
demo's agent if it still runs and starts over with an empty release folder and store; watches
added to the demo's agent meanwhile are kept. ``--stop`` only stops the demo's agent.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shlex
import shutil
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from dgagent.agent import config as config_file
from dgagent.agent.index import Index
from dgagent.cli.main import main as cli
from dgagent.errors import DgError
from dgagent.fileio import atomic_output
from dgagent.rpc import AgentClient, AgentNotRunning
from dgagent.rpc.paths import agent_paths

VERSIONS = 5
ENV_HEADER = "# dg-agent demo:"
# The user's own choice of agent files would beat the demo's XDG dirs (see agent_paths).
OVERRIDES = ("DG_CONFIG", "DG_STATE_DIR", "DG_RUNTIME_DIR")


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
    # One runtime dir per work folder: two demo folders never share (or stop) one agent. Unix
    # socket paths are short (~104 bytes), so it lives under /tmp, not under the work folder.
    tag = hashlib.sha256(os.fsencode(work)).hexdigest()[:12]
    return {
        "XDG_CONFIG_HOME": str(xdg / "config"),
        "XDG_STATE_HOME": str(xdg / "state"),
        "XDG_CACHE_HOME": str(xdg / "cache"),
        "DG_CACHE_DIR": str(xdg / "cache" / "references"),
        "XDG_RUNTIME_DIR": f"/tmp/dg-agent-demo-{os.getuid()}-{tag}",  # noqa: S108 (the agent refuses a dir it does not own)
    }


def scripts_dir() -> Path:
    """The folder holding this installation's dg-agent and dg-tui (a virtualenv's bin)."""
    schemes = (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user"))
    folders = [Path(sysconfig.get_path("scripts", scheme)) for scheme in schemes]
    for folder in folders:
        if (folder / "dg-agent").is_file():
            return folder.absolute()
    raise SystemExit(
        f"demo: the dg-agent command is not installed in {folders[0]}, so env.sh could not "
        "offer it; install it with: pip install -e . (./scripts/demo does that for you)"
    )


def env_script(env: dict[str, str], bin_dir: Path) -> str:
    """``env.sh``: absolute, quoted paths, so it works sourced from any folder."""
    lines = [
        f"{ENV_HEADER} source this file to use the demo's agent from any folder",
        f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"',
        f"unset {' '.join(OVERRIDES)}",
        *(f"export {k}={shlex.quote(v)}" for k, v in env.items()),
    ]
    return "\n".join(lines) + "\n"


def dg(*argv: str) -> None:
    print(f"   $ dg-agent {' '.join(argv)}", flush=True)
    code = cli(list(argv))
    if code != 0:
        raise SystemExit(code)  # dg-agent has said what went wrong and what to do


def running_pid() -> int | None:
    """The pid of the demo's agent (found through its socket), or None when none runs."""
    try:
        with AgentClient(agent_paths().socket, timeout=10) as client:
            return int(client.call("status")["pid"])
    except AgentNotRunning:
        return None


def check_work_folder(work: Path) -> None:
    """Fail before anything changes when the folder cannot be written or is not the demo's."""
    try:
        work.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=work)
        os.close(fd)
        os.unlink(probe)
        ours = (work / "env.sh").is_file() or not any(work.iterdir())
    except OSError as exc:
        raise SystemExit(
            f"demo: cannot write to {work} ({exc.strerror or exc}); "
            "give the demo a writable folder, e.g.: ./scripts/demo /tmp/dg-demo"
        ) from None
    if not ours:
        # A re-run empties DIR/releases and DIR/store: never in a folder of the user's own.
        raise SystemExit(
            f"demo: {work} is neither empty nor an earlier demo's folder; "
            "give the demo a new or empty folder, e.g.: ./scripts/demo /tmp/dg-demo"
        )


def start_over(work: Path, releases: Path) -> None:
    """Stop an earlier run's agent and empty its release folder, store and caches. The config
    stays, so watches the user added are kept; only the demo watch's index rows go, or the agent
    would take the rewritten files for ones already stored."""
    pid = running_pid()
    if pid is not None:
        step(f"stopping the demo agent an earlier run left running (pid {pid})")
        dg("stop")
    old = [p for p in (releases, work / "store") if p.exists()]
    if old:
        names = " and ".join(p.name for p in old)
        step(f"starting over: emptying the earlier run's {names} (added watches are kept)")
    for folder in (*old, work / "xdg" / "cache"):
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SystemExit(
                f"demo: cannot remove {folder} ({exc.strerror or exc}); "
                "remove it yourself and run the demo again"
            ) from None
    if agent_paths().index.exists():
        index = Index(agent_paths().index)
        try:
            index.forget_watch(str(releases))
        finally:
            index.close()


def wait_stored(releases: Path, expected: int, env_file: Path, timeout: float = 120.0) -> None:
    """Until the demo's files are stored, or the agent is idle (then verify tells what failed).
    Only the demo's watch is counted: a watch the user added may be retrying for long."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        with AgentClient(agent_paths().socket) as client:
            status = client.call("status")
        mine = [w for w in status["watches"] if w["dir"] == str(releases)]
        if mine and mine[0]["files"] >= expected:
            return
        streak = streak + 1 if status["idle"] else 0
        if streak >= 2:
            return
        time.sleep(0.3)
    raise SystemExit(
        f"demo: the agent did not store the release folder within {timeout:.0f} s; "
        f"see why with: source {shlex.quote(str(env_file))} && dg-agent status"
    )


def stop(work: Path) -> int:
    """``--stop``: the demo's agent, if one runs, and nothing else."""
    pid = running_pid()
    if pid is None:
        print(f"demo: no demo agent is running for {work}, so there is nothing to stop")
        return 0
    dg("stop")
    print(f"stopped the demo agent (pid {pid})")
    return 0


def prepare(work: Path, env: dict[str, str]) -> Path:
    """Check what can fail before anything changes, then write env.sh and start over; returns
    the path of env.sh."""
    bin_dir = scripts_dir()
    check_work_folder(work)
    config_file.load(agent_paths().config_file)  # a broken config is reported before any change
    env_file = work / "env.sh"
    with atomic_output(env_file) as partial:  # a failed run leaves the old env.sh or none
        partial.write_text(env_script(env, bin_dir))
    start_over(work, work / "releases")
    for folder in (work / "releases", work / "store"):
        folder.mkdir(parents=True)
    Path(env["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)
    return env_file


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dgagent.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 done, also for --stop when no demo agent runs; 2 a usage error;\n"
        "130 interrupted; any other non-zero: a step failed (its message says what to do)",
    )
    parser.add_argument(
        "dir",
        nargs="?",
        default=os.environ.get("DG_DEMO_DIR") or "demo-out",
        help="work folder (default: $DG_DEMO_DIR, else ./demo-out; ./scripts/demo sets it to "
        "the checkout's demo-out)",
    )
    parser.add_argument(
        "--stop",
        action="store_true",
        help="only stop the demo's agent (nothing is written or removed)",
    )
    parser.add_argument(
        "--versions",
        type=positive,
        default=VERSIONS,
        help=f"how many versions of the release to write (default {VERSIONS})",
    )
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    args = parse(argv)
    work = Path(args.dir).expanduser().resolve()
    env = demo_environment(work)
    for name in OVERRIDES:
        os.environ.pop(name, None)
    os.environ.update(env)
    if args.stop:
        return stop(work)
    env_file = prepare(work, env)
    releases, store = work / "releases", work / "store"
    url = f"file://{store}/releases/"

    step("starting the agent on the embedded local store, watching the release folder")
    dg("watch", "add", str(releases), url)
    dg("start", "--no-service")  # the demo's agent, never a service the user installed

    step(f"a build writes {args.versions} versions of a release into {releases}")
    files = []
    for v in range(args.versions):
        files.extend(write_version(releases, v))
        print(f"   wrote app-1.0.{v}.zip and tarballs/app-1.0.{v}.tar", flush=True)
        time.sleep(0.5)
    notes = releases / "RELEASE-NOTES.txt"
    notes.write_text("".join(f"app 1.0.{v}: fixes\n" for v in range(args.versions)))
    files.append(notes)
    wait_stored(releases, len(files), env_file)

    step("what the agent did")
    dg("status")
    step("what is stored (original size, stored size, ratio)")
    dg("ls", "-r", "-h", "--summarize", url)
    step("what it saved")
    dg("stats", url)
    step("reading every file back and checking its SHA-256")
    dg("verify", "-r", url)

    print(f"\nThe agent keeps running: write more files into {releases} and watch them")
    print(f"go through. From any folder: source {shlex.quote(str(env_file))}, then")
    print("  dg-tui              # live queue, ratios, browse/restore/verify")
    print("  dg-agent status     # and to end the demo: dg-agent stop")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Every failure ends in one sentence that says what to do, and a non-zero exit."""
    try:
        return run(argv)
    except DgError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the disk filled up while writing a release
        where = f" at {exc.filename}" if exc.filename else ""
        print(
            f"demo: {exc.strerror or exc}{where}; fix that and run the demo again",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(
            "demo: interrupted; an agent it started keeps running: add --stop to end it",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
