"""The benchmark's report: rendering an earlier run rewrites docs/performance.md, keeping notes."""

from __future__ import annotations

import doctest
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import bench.cli
import bench.codec_compare
import bench.prune
import bench.report
import bench.scale
import bench.series
from tests.artifacts import write_series
from tests.engine.test_archive_v2 import native_wheel

ROOT = Path(__file__).resolve().parents[1]


def test_doctests() -> None:
    assert doctest.testmod(bench.report).failed == 0


def test_render_rewrites_the_tables_and_keeps_the_notes(tmp_path: Path) -> None:
    docs = tmp_path / "performance.md"
    docs.write_text("# old page\n\n| stale | table |\n" + bench.report.NOTES + "\nkept by hand\n")
    latest = ROOT / "bench" / "results" / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--render", str(latest), "--docs", str(docs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    page = docs.read_text()
    assert page.startswith(bench.report.DOC_HEAD)
    assert "| stale | table |" not in page and "### Targets" in page
    assert page.endswith(bench.report.NOTES + "\nkept by hand\n")
    assert done.stdout.strip() in page  # the same tables as printed


def _drifting_series(folder: Path, versions: int = 7, size: int = 64 * 1024) -> None:
    """Each version rewrites one more 8 KiB block, so a delta against v0 grows by 8 KiB a version
    and passes the 0.5 max ratio at v4: ``single`` then stores whole files, ``rotate`` does not."""
    folder.mkdir()
    rng = random.Random(3)
    data = bytearray(rng.randbytes(size))
    for i in range(versions):
        if i:
            data[i * 8192 : (i + 1) * 8192] = rng.randbytes(8192)
        path = folder / f"app-1.{i}.0.tar"
        path.write_bytes(bytes(data))
        os.utime(path, (1_700_000_000 + 60 * i, 1_700_000_000 + 60 * i))


def test_series_section_alone_on_a_tiny_series(tmp_path: Path) -> None:
    _drifting_series(tmp_path / "app")
    out = tmp_path / "series.json"
    argv = [sys.executable, "-m", "bench", "--series-dir", str(tmp_path / "app"), "--no-docs"]
    skips = (*bench.cli.ON_S3, "scale", "prune")
    argv += ["--json", str(out)] + [f"--skip={s}" for s in skips]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    series = json.loads(out.read_text())["series"]
    rows = series["rows"]
    assert series["files"] == [f"app-1.{i}.0.tar" for i in range(7)]
    assert series["read_back"] == {**series["read_back"], "exact": 7, "failures": []}
    assert rows["single"]["whole"] > 0 and rows["single"]["references"] == 1
    assert rows["rotate"]["whole"] == 0 and rows["rotate"]["references"] >= 2
    for policy in ("single", "rotate"):
        simulated = rows[f"simulated {policy}"]
        assert rows[policy]["reference_versions"] == simulated["reference_versions"]
        assert simulated["stored"] <= rows[policy]["stored"] <= 1.1 * simulated["stored"]
    assert rows["chain"]["stored"] < rows["rotate"]["stored"] < rows["single"]["stored"]
    assert "### Long release series" in done.stdout and "all 7 bit-exact" in done.stdout


def test_prune_section_alone_on_a_drifting_series(tmp_path: Path) -> None:
    write_series(tmp_path / "app", 12)
    out = tmp_path / "prune.json"
    argv = [sys.executable, "-m", "bench", "--series-dir", str(tmp_path / "app"), "--no-docs"]
    skips = (*bench.cli.ON_S3, "scale", "series")
    argv += ["--json", str(out)] + [f"--skip={s}" for s in skips]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    prune = json.loads(out.read_text())["prune"]
    assert prune["stored_versions"] == 12
    assert [r["kept_versions"] for r in prune["runs"]] == list(bench.prune.KEEPS)
    for r in prune["runs"]:
        assert r["after"] == r["reported_after"] == r["dryrun_after"] < prune["before"]
        assert r["ratio"] <= prune["target"]
        keep = r["kept_versions"]
        assert r["read_back_dg_agent"] == r["read_back_deltaglider"] == keep
        assert f"{keep}/{keep} / {keep}/{keep}" in done.stdout
    assert "### Retention" in done.stdout


def test_series_section_says_when_it_was_skipped() -> None:
    page = bench.report.markdown(
        {
            "settings": {"runs": 1, "corpus": "none", "quick": False, "families": {}},
            "machine": json.loads((ROOT / "bench" / "results" / "latest.json").read_text())[
                "machine"
            ],
            "series": bench.series.skipped("no --series PACKAGE or --series-dir DIR was given"),
        }
    )
    assert "### Long release series" in page and "| skipped | no --series" in page


def test_scale_section_alone_on_a_small_bucket(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    argv = [sys.executable, "-m", "bench", "--scale-objects", "300", "--runs", "1", "--no-docs"]
    skips = (*bench.cli.ON_S3, "series", "prune")
    argv += ["--json", str(out)] + [f"--skip={s}" for s in skips]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    scale = json.loads(out.read_text())["scale"]
    rows = scale["rows"]
    assert scale["objects"] == {"dg-agent": 300, "deltaglider": 300}
    assert set(rows) == {key for key, _ in bench.report.SCALE_ROWS}
    files = 300 - bench.scale.SPACES  # every object but the references
    assert rows["boto3 list"] == {**rows["boto3 list"], "files": 300, "total": 1}
    for key in ("dg-agent ls cold", "dg-agent ls warm", "dg-agent stats", "deltaglider ls"):
        assert rows[key]["files"] == files, key
    # the first listing reads each file's metadata once; every later command only lists
    assert rows["dg-agent ls cold"]["requests"]["HEAD"] == files
    for key in ("dg-agent ls warm", "dg-agent stats", "dg-agent sync", "deltaglider sync"):
        assert rows[key]["requests"] == {"LIST": 1}, key
    assert rows["deltaglider stats detailed"]["requests"]["HEAD"] == files
    assert rows["dg-agent rm"]["left"] == rows["deltaglider rm"]["left"] == 0
    assert rows["dg-agent rm"]["requests"]["POST"] >= 1  # DeleteObjects, not one DELETE a key
    assert rows["dg-agent rm"]["total"] < 30 < rows["deltaglider rm"]["total"]
    assert all(0 < r["seconds"] < 60 for r in rows.values())
    assert rows["boto3 list"]["cpu_seconds"] is None  # in process, beside the proxy
    assert all(0 < r["cpu_seconds"] < 60 for k, r in rows.items() if k != "boto3 list")
    assert "### Bucket scale" in done.stdout
    assert f"| dg-agent `ls -r` again (warm) | {files} files | 1 | 0 |" in done.stdout


def test_codec_compare_prints_every_variant_and_reads_back_bit_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench/codec_compare.py on a small family of native wheels: one row per variant, the
    archive/compat ratio row, every file read back bit-exact."""
    family = tmp_path / "nat"
    family.mkdir()
    for v in range(3):
        native_wheel(family / f"nat-1.{v}-cp311-linux_x86_64.whl", v)
    assert bench.codec_compare.main([str(family), "--repeat", "2"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| nat |")]
    assert [r.split("|")[4].strip() for r in rows] == [
        "compat",
        "archive, xdelta3 only",
        "archive",
        "archive / compat",
    ]
    assert all(r.split("|")[11].strip() == "yes" for r in rows[:3])
    assert "2 archive-v3" in rows[2]
