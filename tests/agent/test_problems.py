"""What a user must act on is visible in ``status`` (text and JSON) with the command that fixes
it; the agent checks its prerequisites and each watch's store; failed files come back after a
restart or ``dg-agent retry``; pause and resume from the command line."""

from __future__ import annotations

import os
import random
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

from tests import artifacts
from tests.agent.conftest import DG_AGENT, AgentProc, agent_config
from tests.faults.proxy import FaultProxy, Rule


def problems(agent: AgentProc) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = agent.status()["problems"]
    return found


def test_no_xdelta3_no_start(agent: AgentProc, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    agent.write_config(agent_config([]))
    env = {**agent.env, "PATH": str(empty)}
    for verb in ("run", "start"):
        done = subprocess.run(
            [str(DG_AGENT), verb], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode != 0
        said = done.stdout + done.stderr
        assert "xdelta3 is not on PATH" in said and "apt-get install xdelta3" in said, said
        assert "Traceback" not in said


def test_failed_files_are_shown_and_retried(
    agent: AgentProc, proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    url = f"s3://{bucket}/rel/"
    agent.write_config(agent_config([{"dir": str(folder), "url": url}], endpoint=proxy.url))
    proxy.set_rules(Rule(ops=("PUT", "PART"), status=403))  # AccessDenied: a permanent failure
    agent.start()
    artifacts.write_zip(folder / "app-1.0.zip", artifacts.source_tree(0))
    agent.wait_for(lambda: agent.status()["failed"] == 1, what="the file to fail")
    (found,) = [p for p in problems(agent) if "failed" in p["problem"]]
    assert found["watch"] == str(folder)
    assert "1 file failed" in found["problem"] and "AccessDenied" in found["problem"]
    assert found["fix"] == f"fix the cause, then: dg-agent retry {folder}"
    text = agent.cli("status").stdout
    assert (
        "problem: 1 file failed" in text
        and f"fix: fix the cause, then: dg-agent retry {folder}" in text
    )

    proxy.set_rules()
    done = agent.cli("retry")
    assert "1 failed file of every watched folder queued again" in done.stdout
    agent.wait_for(lambda: agent.status()["done"] == 1, what="the retried file to be stored")
    assert not [p for p in problems(agent) if "failed" in p["problem"]]

    # A failure before a restart is tried again at the next start.
    proxy.set_rules(Rule(ops=("PUT", "PART"), status=403))
    artifacts.write_zip(folder / "app-1.1.zip", artifacts.source_tree(1))
    agent.wait_for(lambda: agent.status()["failed"] == 1, what="the second file to fail")
    assert agent.stop() == 0
    proxy.set_rules()
    agent.start()
    agent.wait_for(lambda: agent.status()["done"] == 2, what="the failed file retried at start")


def test_pause_and_resume_from_the_command_line(agent: AgentProc, tmp_path: Path) -> None:
    folder, store = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    agent.write_config(agent_config([{"dir": str(folder), "url": f"file://{store}/rel/"}]))
    agent.start()
    assert "paused: every watched folder" in agent.cli("pause").stdout
    artifacts.write_zip(folder / "app-1.0.zip", artifacts.source_tree(0))
    time.sleep(2.0)
    assert agent.status()["done"] == 0 and agent.status()["paused"] is True
    assert f"resumed: {folder}" in agent.cli("resume", str(folder)).stdout
    assert "resumed: every watched folder" in agent.cli("resume").stdout
    agent.wait_for(lambda: agent.status()["done"] == 1, what="the file stored after resume")
    outside = agent.cli("pause", str(tmp_path / "elsewhere"), check=False)
    assert outside.returncode != 0 and "is not watched" in outside.stderr


def test_a_broken_config_edit_is_a_problem_until_fixed(agent: AgentProc, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    good = agent_config([{"dir": str(folder), "url": f"file://{tmp_path}/store/rel/"}])
    agent.write_config(good)
    agent.start()
    agent.write_config(good + "\n[[watch]]\ndir = 5\n")
    agent.call("config.reload")
    agent.wait_for(lambda: bool(problems(agent)), what="the config problem")
    (found,) = problems(agent)
    assert (
        "config file is not valid" in found["problem"] and "keeps its previous" in found["problem"]
    )
    assert str(agent.config) in found["fix"]
    assert len(agent.status()["watches"]) == 1  # still working with the previous settings
    agent.write_config(good)
    agent.call("config.reload")
    agent.wait_for(lambda: not problems(agent), what="the problem to clear")


def test_watch_add_checks_the_store(agent: AgentProc, s3_endpoint: str, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    agent.write_config(agent_config([], endpoint=s3_endpoint))
    missing = f"s3://no-such-bucket-{os.getpid()}/rel/"
    done = agent.cli("watch", "add", str(folder), missing, check=False)
    assert done.returncode != 0
    assert "does not exist" in done.stderr and "--no-check" in done.stderr
    assert "Traceback" not in done.stderr
    assert agent.cli("watch", "list", "--json").stdout.count('"url"') == 0
    agent.cli("watch", "add", str(folder), missing, "--no-check")
    agent.start()
    agent.wait_for(lambda: any("cannot be read" in p["problem"] for p in problems(agent)), what="")
    (found,) = problems(agent)
    assert found["watch"] == str(folder) and "dg-agent watch remove" in found["fix"]
    started = agent.cli("status").stdout
    assert "problem:" in started and "cannot be read" in started


def _lonely_tree(folder: Path) -> None:
    """One version per folder, as a Maven repository lays out its artifacts."""
    for v in range(5):
        path = folder / "app" / f"1.{v}" / f"app-1.{v}.zip"
        path.parent.mkdir(parents=True)
        artifacts.write_zip(path, artifacts.source_tree(v))


def _jars_that_do_not_delta(folder: Path) -> None:
    rng = random.Random(5)
    for v in range(4):  # the first is the first reference; none of the others deltas
        with zipfile.ZipFile(folder / f"lib-{v}.jar", "w", zipfile.ZIP_STORED) as jar:
            jar.writestr("blob.bin", rng.randbytes(60_000))


def test_advice_for_a_layout_that_cannot_delta_and_for_poor_jar_deltas(
    agent: AgentProc, tmp_path: Path
) -> None:
    maven, jars = tmp_path / "maven", tmp_path / "jars"
    maven.mkdir()
    jars.mkdir()
    agent.write_config(
        agent_config(
            [
                {"dir": str(maven), "url": f"file://{tmp_path}/store/maven/"},
                {"dir": str(jars), "url": f"file://{tmp_path}/store/jars/"},
            ]
        )
    )
    agent.start()
    _lonely_tree(maven)
    _jars_that_do_not_delta(jars)
    agent.wait_for(lambda: agent.status()["done"] == 9, what="9 files stored")
    # The advice is recomputed at most every few seconds, once files were stored since.
    agent.wait_for(lambda: len(problems(agent)) == 2, what="the advice for both watches")
    found = problems(agent)
    (lonely,) = [p for p in found if p["watch"] == str(maven)]
    assert "alone in its folder" in lonely["problem"] and "one folder" in lonely["fix"]
    (poor,) = [p for p in found if p["watch"] == str(jars)]
    assert "over 80%" in poor["problem"] and "--codec archive" in poor["fix"]
