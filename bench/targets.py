"""The issue's targets, judged from the measured numbers (met / unmet, with the number)."""

from __future__ import annotations

from typing import Any


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(target: str, met: bool | None, value: str) -> None:
        out.append({"target": target, "met": met, "value": value})

    sizes = results.get("sizes", {})
    for name, s in sizes.items():
        ours, theirs = s["dg_agent"], s["deltaglider"]
        value = f"{ours:,} vs {theirs:,} B ({ours / theirs:.3f}x)"
        readable = s["deltaglider_reads_own"]
        met: bool | None = ours <= theirs
        if readable < s["files"] and not met:
            # bytes that do not read back are no peer to beat: say so instead of a verdict
            value += f"; but deltaglider reads back only {readable}/{s['files']} of its files"
            met = None
        add(f"{name}: stored ≤ deltaglider's", met, value)
        add(
            f"{name}: stored within 3% of raw xdelta3 -9",
            s["dg_agent"] <= 1.03 * s["xdelta3"],
            f"{s['dg_agent']:,} vs {s['xdelta3']:,} B ({s['dg_agent'] / s['xdelta3']:.3f}x)",
        )
    speed = results.get("speed", {})
    for name, s in speed.items():
        ours, theirs = s["sync"].get("dg-agent s3"), s["sync"].get("deltaglider s3")
        if ours and theirs:
            add(
                f"{name}: cold sync ≤ 0.5x deltaglider's",
                ours <= 0.5 * theirs,
                f"{ours:.2f} s vs {theirs:.2f} s ({ours / theirs:.2f}x)",
            )
        ours, theirs = s["restore"].get("dg-agent s3 warm"), s["restore"].get("deltaglider s3 warm")
        if ours and theirs:
            add(
                f"{name}: warm restore ≤ 0.5x deltaglider's",
                ours <= 0.5 * theirs,
                f"{ours:.2f} s vs {theirs:.2f} s ({ours / theirs:.2f}x)",
            )
        elif ours:
            add(
                f"{name}: warm restore ≤ 0.5x deltaglider's",
                None,
                f"{ours:.2f} s; deltaglider did not restore the file bit-exact",
            )
    agent = results.get("agent", {})
    if "reconcile" in agent:
        r = agent["reconcile"]
        add(
            f"0 S3 requests for an unchanged reconcile ({r['files']:,} files)",
            r["s3_requests"] == 0,
            f"{r['s3_requests']} requests, {r['seconds']:.2f} s",
        )
    if "idle" in agent:
        i = agent["idle"]
        n = agent["files_watched"]
        add(
            f"idle agent ≤ 80 MB RSS ({n:,} files)",
            i["rss_mb_max"] <= 80,
            f"{i['rss_mb_max']:.1f} MB",
        )
        add(
            f"idle agent ≤ 1% CPU ({n:,} files, {i['seconds']:.0f} s)",
            i["cpu_percent"] <= 1.0,
            f"{i['cpu_percent']:.2f} %",
        )
    series = results.get("series", {})
    if "rows" in series:
        rows, name = series["rows"], series["name"]
        for policy in ("rotate", "single"):
            ours, predicted = rows[policy]["stored"], rows[f"simulated {policy}"]["stored"]
            add(
                f"{name} series, {policy}: stored ≤ 1.1x the simulation of its rule",
                ours <= 1.1 * predicted,
                f"{ours:,} vs {predicted:,} B ({ours / predicted:.3f}x)",
            )
        back = series["read_back"]
        add(
            f"{name} series: every file of the rotate store read back bit-exact (cold)",
            not back["failures"],
            f"{back['exact']}/{back['files']}",
        )
    return out
