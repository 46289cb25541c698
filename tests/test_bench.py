"""The benchmark's report: rendering an earlier run rewrites docs/performance.md, keeping notes."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import bench.report

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
