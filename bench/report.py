"""The results as markdown tables (stdout and docs/performance.md) and as JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench import prune


def _mb(n: int | float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.2f}"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _x(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f} %" if b else "-"


def sizes_table(sizes: dict[str, Any]) -> list[str]:
    rows = [
        "| family | files | original MB | dg-agent MB | deltaglider MB (it reads back own / ours) "
        "| dg-agent reads deltaglider's | raw xdelta3 -9 MB | plain MB | dg-agent / deltaglider "
        "| dg-agent / xdelta3 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = ("files", "original", "dg_agent", "deltaglider", "xdelta3", "plain")
    reads = ("deltaglider_reads_own", "deltaglider_reads_ours", "dg_agent_reads_theirs")
    total = dict.fromkeys(keys + reads, 0)
    for name, s in [*sizes.items(), ("**total**", total)]:
        if name != "**total**":
            for k in total:
                total[k] += s[k]
        n = s["files"]
        rows.append(
            f"| {name} | {n} | {_mb(s['original'])} | {_mb(s['dg_agent'])} "
            f"({_pct(s['dg_agent'], s['original'])}) | {_mb(s['deltaglider'])} "
            f"({s['deltaglider_reads_own']}/{n} / {s['deltaglider_reads_ours']}/{n}) "
            f"| {s['dg_agent_reads_theirs']}/{n} | {_mb(s['xdelta3'])} | {_mb(s['plain'])} "
            f"| {_x(s['dg_agent'], s['deltaglider'])} "
            f"| {_x(s['dg_agent'], s['xdelta3'])} |"
        )
    return rows


def sync_table(speed: dict[str, Any], runs: int) -> list[str]:
    rows = [
        f"| family (cold sync, median of {runs}; wall s (CPU s)) | dg-agent → S3 "
        "| deltaglider → S3 | boto3 upload | dg-agent / deltaglider wall (CPU) "
        "| dg-agent → file:// | plain copy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    tools = ("dg-agent s3", "deltaglider s3", "boto3 s3", "dg-agent file", "copy file")
    total: dict[str, float] = dict.fromkeys(tools, 0.0)
    total_cpu: dict[str, float] = dict.fromkeys(tools, 0.0)
    for name, s in speed.items():
        for t in tools:
            total[t] += s["sync"].get(t) or 0.0
            total_cpu[t] += s.get("sync_cpu", {}).get(t) or 0.0
        rows.append(_sync_row(name, s["sync"], s.get("sync_cpu", {})))
    rows.append(_sync_row("**total**", total, total_cpu))
    return rows


def _sync_row(name: str, m: dict[str, Any], cpu: dict[str, Any]) -> str:
    def cell(tool: str) -> str:
        return f"{_s(m.get(tool))} ({_s(cpu.get(tool))})" if cpu.get(tool) else _s(m.get(tool))

    ours, theirs = "dg-agent s3", "deltaglider s3"
    return (
        f"| {name} | {cell(ours)} | {cell(theirs)} | {_s(m.get('boto3 s3'))} "
        f"| {_x(m.get(ours), m.get(theirs))} ({_x(cpu.get(ours), cpu.get(theirs))}) "
        f"| {cell('dg-agent file')} | {_s(m.get('copy file'))} |"
    )


def restore_table(speed: dict[str, Any], runs: int) -> list[str]:
    rows = [
        f"| family (restore newest, median of {runs}, s) | dg-agent S3 cold | dg-agent S3 warm "
        "| deltaglider cold | deltaglider warm | warm: dg-agent / deltaglider | boto3 GET "
        "| dg-agent file:// cold | warm | plain copy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in speed.items():
        r = s["restore"]
        ok = s["restore_ok"]
        theirs_cold = _s(r.get("deltaglider s3 cold")) if ok.get("deltaglider s3 cold") else "fails"
        theirs_warm = _s(r.get("deltaglider s3 warm")) if ok.get("deltaglider s3 warm") else "fails"
        rows.append(
            f"| {name} | {_s(r.get('dg-agent s3 cold'))} | {_s(r.get('dg-agent s3 warm'))} "
            f"| {theirs_cold} | {theirs_warm} "
            f"| {_x(r.get('dg-agent s3 warm'), r.get('deltaglider s3 warm'))} "
            f"| {_s(r.get('boto3 s3'))} | {_s(r.get('dg-agent file cold'))} "
            f"| {_s(r.get('dg-agent file warm'))} | {_s(r.get('copy file'))} |"
        )
    return rows


def overhead_table(overhead: dict[str, Any]) -> list[str]:
    rows = [
        "| family | store | files | stored as | dg-agent s/file | parts alone s/file "
        "(sha256 + encode + decode check + upload) | dg-agent / parts |",
        "|---|---|---:|---|---:|---|---:|",
    ]
    for name, stores in overhead.items():
        for store, o in stores.items():
            split = " + ".join(f"{v:.3f}" for v in o["split"].values())
            kinds = ", ".join(sorted(set(o["kinds"])))
            rows.append(
                f"| {name} | {store} | {o['files']} | {kinds} | {_s(o['ours'])} "
                f"| {_s(o['parts'])} ({split}) | {_x(o['ours'], o['parts'])} |"
            )
    return rows


def agent_table(agent: dict[str, Any]) -> list[str]:
    b, a, r, i = agent["burst"], agent["artifact"], agent["reconcile"], agent["idle"]
    settle = agent["settle_seconds"]
    return [
        f"| agent (defaults: settle window {settle:g} s, {agent['workers']} workers; "
        f"{agent.get('watches', 3)} watches on S3) | value |",
        "|---|---:|",
        f"| landing → stored, burst of {b['files']} x {_mb(b['bytes_each'])} MB: median "
        f"| {_s(b['median'])} s |",
        f"| landing → stored, burst: p95 | {_s(b['p95'])} s |",
        f"| … of which the put itself (worker seconds): median | {_s(b.get('put_median'))} s |",
        f"| landing → stored, ~{_mb(a['bytes_each'])} MB artifact ({a['origin']}, "
        f"{a['versions']} versions): median | {_s(a['median'])} s |",
        f"| … the first version (it becomes the reference) | {_s(a['first'])} s |",
        f"| … of which the put itself (worker seconds): median | {_s(a.get('put_median'))} s |",
        f"| initial store of {agent['files_watched']:,} small files (first scan) "
        f"| {_s(agent['initial_store_seconds'])} s |",
        f"| reconcile of {r['files']:,} unchanged files: wall time | {_s(r['seconds'])} s |",
        f"| reconcile: S3 requests | {r['s3_requests']} |",
        f"| idle over {i['seconds']:.0f} s with {agent['files_watched']:,} files watched: RSS "
        f"(max) | {i['rss_mb_max']:.1f} MB |",
        f"| idle: CPU | {i['cpu_percent']:.2f} % |",
    ]


SERIES_ROWS = (
    ("single", "`single` policy (one sticky reference, as DeltaGlider): cold `dg-agent sync`"),
    ("rotate", "`rotate` policy (the default): cold `dg-agent sync`"),
    ("simulated single", "simulation of `single`: xdelta3 + `rotation.decide`, no store"),
    ("simulated rotate", "simulation of `rotate`: xdelta3 + `rotation.decide`, no store"),
    ("chain", "chain: each version against the previous one (not DeltaGlider-readable)"),
)


def series_table(series: dict[str, Any]) -> list[str]:
    if "skipped" in series:
        return ["| long release series | |", "|---|---|", f"| skipped | {series['skipped']} |"]
    rows, n, original = series["rows"], len(series["files"]), series["original"]
    out = [
        f"| {series['name']}: {n} versions, {_mb(original)} MB, in release order "
        "| stored MB | stored / original | stored whole | references | encodes (decodes) "
        "| wall s (CPU s) | measured / predicted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in SERIES_ROWS:
        r = rows.get(key)
        if r is None:
            continue
        sim = rows.get(f"simulated {key}")
        encodes = f"{r['encodes']}" + ("" if r["decodes"] is None else f" ({r['decodes']})")
        wall = _s(r["seconds"]) + ("" if r["cpu_seconds"] is None else f" ({_s(r['cpu_seconds'])})")
        out.append(
            f"| {label} | {_mb(r['stored'])} | {r['stored'] / original:.3f} | {r['whole']} "
            f"| {r['references']} | {encodes} | {wall} "
            f"| {_x(r['stored'], sim['stored']) if sim else '-'} |"
        )
    back = series["read_back"]
    verdict = (
        f"all {back['files']} bit-exact"
        if not back["failures"]
        else f"**{len(back['failures'])} of {back['files']} failed**: "
        + ", ".join(back["failures"][:5])
    )
    out.append(
        f"| read back: `dg-agent verify -r` of the rotate store, empty cache | {verdict} "
        f"| | | | | {_s(back['seconds'])} | |"
    )
    refs = [
        f"{key} at v{', v'.join(str(i) for i in rows[key]['reference_versions'])}"
        for key in ("rotate", "simulated rotate")
        if key in rows
    ]
    if refs:
        out += ["", "References (v0 is the oldest): " + "; ".join(refs) + "."]
    return out


SCALE_ROWS = (
    ("boto3 list", "plain boto3 `list_objects_v2` paginator, in process (the floor)"),
    ("deltaglider start-up", "DeltaGlider `--version` (start-up alone)"),
    ("dg-agent start-up", "dg-agent `--version` (start-up alone)"),
    ("deltaglider ls", "DeltaGlider `ls -r` (stored sizes only: it reads no metadata)"),
    ("dg-agent ls cold", "dg-agent `ls -r`, empty metadata cache (cold)"),
    ("dg-agent ls warm", "dg-agent `ls -r` again (warm)"),
    ("deltaglider stats", "DeltaGlider `stats` (quick, its default: no original sizes)"),
    ("deltaglider stats detailed", "DeltaGlider `stats --detailed` (exact)"),
    ("dg-agent stats", "dg-agent `stats` (warm)"),
    ("deltaglider sync", "DeltaGlider `sync` of the unchanged folder"),
    ("dg-agent sync", "dg-agent `sync` of the unchanged folder (warm)"),
    ("deltaglider rm", "DeltaGlider `rm -r`"),
    ("dg-agent rm", "dg-agent `rm -r`"),
)
SCALE_OPS = ("LIST", "HEAD", "GET", "PUT", "POST", "DELETE")
"""The request columns (POST is DeleteObjects); any other operation still counts in the total."""
SCALE_VERSUS = (
    ("`ls -r`", "dg-agent ls warm", "deltaglider ls"),
    ("`stats`", "dg-agent stats", "deltaglider stats"),
    ("`stats` against DeltaGlider's `--detailed`", "dg-agent stats", "deltaglider stats detailed"),
    ("unchanged `sync`", "dg-agent sync", "deltaglider sync"),
    ("`rm -r`", "dg-agent rm", "deltaglider rm"),
)
"""dg-agent's row against DeltaGlider's doing the same job (dg-agent warm where it has a cache)."""


def _scale_result(key: str, r: dict[str, Any]) -> str:
    """What a command found or did: files listed, objects left, or files uploaded."""
    if r["left"] is not None:
        return f"{r['left']:,} left"
    if r["files"] is not None:
        return f"{r['files']:,} {'objects' if key == 'boto3 list' else 'files'}"
    if key.endswith("start-up"):
        return ""
    return f"{r['requests'].get('PUT', 0) + r['requests'].get('PART', 0)} uploaded"


def _scale_seconds(r: dict[str, Any], runs: int) -> str:
    once = len(r["samples"]) == 1 and runs > 1
    return _s(r["seconds"]) + (" (1 run)" if once else "")


def scale_table(scale: dict[str, Any]) -> list[str]:
    rows, runs, objects = scale["rows"], scale["runs"], scale["objects"]
    counts = sorted(set(objects.values()))
    size = " / ".join(f"{n:,}" for n in counts)
    out = [
        f"| {size} objects per bucket, {scale['spaces']} DeltaSpaces | result "
        + "".join(f"| {op} " for op in SCALE_OPS)
        + f"| requests | wall s (median of {runs}) | CPU s |",
        "|---|---:" + "|---:" * len(SCALE_OPS) + "|---:|---:|---:|",
    ]
    for key, label in SCALE_ROWS:
        r = rows.get(key)
        if r is None:
            continue
        ops = "".join(f"| {r['requests'].get(op, 0):,} " for op in SCALE_OPS)
        out.append(
            f"| {label} | {_scale_result(key, r)} {ops}| {r['total']:,} "
            f"| {_scale_seconds(r, runs)} | {_s(r.get('cpu_seconds'))} |"
        )
    versus = [_versus(rows, *v) for v in SCALE_VERSUS]
    return [*out, "", *(line for line in versus if line)]


def _versus(rows: dict[str, Any], what: str, ours: str, theirs: str) -> str:
    a, b = rows.get(ours), rows.get(theirs)
    if a is None or b is None:
        return ""
    partial = ""
    if a["files"] is not None and b["files"] is not None and b["files"] < a["files"]:
        partial = f"; DeltaGlider's covers only {b['files']:,} of the {a['files']:,} files"
    return (
        f"- {what}: dg-agent {_took(a)}, DeltaGlider {_took(b)}: "
        f"{_x(a['seconds'], b['seconds'])} the wall time{partial}."
    )


def _took(r: dict[str, Any]) -> str:
    cpu = r.get("cpu_seconds")
    cpu_part = "" if cpu is None else f" ({_s(cpu)} s CPU)"
    return f"{_s(r['seconds'])} s{cpu_part} and {_requests(r['total'])}"


def _requests(n: int) -> str:
    return f"{n:,} request" + ("" if n == 1 else "s")


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    rows = ["| target | met | measured |", "|---|---|---|"]
    for t in targets:
        met = "n/a" if t["met"] is None else ("met" if t["met"] else "**unmet**")
        rows.append(f"| {t['target']} | {met} | {t['value']} |")
    return rows


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['date']}: {m['nproc']} x {m['cpu']}, {m['memory_gib']} GiB, {m['os']}, "
        f"Python {m['python']}, {m['xdelta3']}, "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + _load(m)
    )


def _load(m: dict[str, Any]) -> str:
    start, end = m.get("load_average_at_start"), m.get("load_average_at_end")
    if not start or not end:
        return ""
    show = "/".join
    return (
        f"; load average (1/5/15 min) {show(f'{v:.1f}' for v in start)} at the start, "
        f"{show(f'{v:.1f}' for v in end)} at the end"
    )


ALONE = (
    ("scale", "bucket-scale section ran (on moto_server on 127.0.0.1)"),
    ("series", "long-release-series section ran (into local `file://` stores)"),
    ("prune", "retention section ran (on moto_server on 127.0.0.1)"),
)


def _alone(results: dict[str, Any]) -> str:
    """The scope line of a run that measured no corpus family: the sections that ran."""
    ran = [what for key, what in ALONE if results.get(key) and "skipped" not in results[key]]
    return "Only the " + (" and the ".join(ran) or "targets section ran") + "."


def markdown(results: dict[str, Any]) -> str:
    runs = results["settings"]["runs"]
    if results["settings"]["families"]:
        scope = (
            f"Corpus: {results['settings']['corpus']}; "
            f"{'**quick** mode' if results['settings']['quick'] else 'full mode'}; "
            f"{runs} runs per timing; S3 is moto_server on 127.0.0.1."
        )
    else:
        scope = _alone(results)
    parts = [scope, "", f"Machine: {machine_line(results['machine'])}."]
    sections: list[tuple[str, Callable[[Any], list[str]], str]] = [
        ("Size", sizes_table, "sizes"),
        ("Sync speed", lambda s: sync_table(s, runs), "speed"),
        ("Restore speed", lambda s: restore_table(s, runs), "speed"),
        ("Engine overhead", overhead_table, "overhead"),
        ("Agent", agent_table, "agent"),
        ("Long release series", series_table, "series"),
        ("Retention", prune.table, "prune"),
        ("Bucket scale", scale_table, "scale"),
        ("Targets", targets_table, "targets"),
    ]
    for title, fn, key in sections:
        if results.get(key):
            parts += ["", f"### {title}", "", *fn(results[key])]
    return "\n".join(parts) + "\n"


DOC_HEAD = """# Performance

The numbers below come from one run of the benchmark command, which measures dg-agent side by
side with DeltaGlider 6.2.0, raw `xdelta3 -e -9` and
plain uploads, on the same files, the same machine and the same local S3 endpoint (moto's server
on 127.0.0.1), in one run. Machines are shared and noisy: compare the ratios between tools of one
run, not absolute seconds across runs. Benchmarks are not tests: nothing fails on a number; the
"Targets" table says which of the goals of issue 5 this run met.

## How to rerun

```sh
.venv/bin/python -m bench --fetch         # the real corpus, fetched once into ~/.cache
.venv/bin/python -m bench --corpus DIR    # a folder of family folders of successive versions
.venv/bin/python -m bench                 # the built-in synthetic release series (no network)
.venv/bin/python -m bench --quick         # about 3 minutes: less of everything, marked as such
.venv/bin/python -m bench --series botocore  # also a long real release series (40 wheels)
```

`--fetch` runs `bench/fetch_corpus.sh` (pinned botocore wheels and typescript npm tarballs, and
the same packages as plain tars) into `~/.cache/dg-agent-bench/corpus`; it needs pip and npm once.
The benchmark needs the test extras (`pip install -e '.[test]'`: moto[server], deltaglider
6.2.0) and `xdelta3` on PATH. It prints the tables, writes every sample to
`bench/results/latest.json` and rewrites this page. A full run on the real corpus takes 5 to 9
minutes on 2 cores (more on a busy machine), plus about 18 for the bucket-scale section (`--skip
scale` leaves it out); `--quick` (about 5 minutes) uses 3 versions per family, 1,000 agent files,
a 20 s idle window and 2,000-object buckets.

`--series PACKAGE` runs `bench/long_series.sh` (`--series-count` consecutive wheels of a PyPI
package, 40 by default, ~650 MB for botocore) into `~/.cache/dg-agent-bench/series/PACKAGE`;
`--series-dir DIR` takes any folder of versions of one artifact, in release order by mtime, then
name. Without either, the long-series section says it was skipped. Alone, it takes 5 to 10 minutes
on 40 botocore wheels: `python -m bench --series-dir DIR --skip size --skip speed --skip overhead
--skip agent --skip scale --no-docs --json bench/results/series-NAME.json`.

The bucket-scale section fills two buckets of `--scale-objects` objects each (20,000 by default,
2,000 with `--quick`) and times `ls -r`, `stats`, an unchanged `sync` and `rm -r` on them. Alone,
it takes about 18 minutes at 20,000 objects on 2 cores (2 at 2,000), most of it moto filling the
buckets and DeltaGlider's `rm -r` (a HEAD and a DELETE per object): `python -m bench --skip size
--skip speed --skip overhead --skip agent --skip series --no-docs --json
bench/results/scale.json`.

## What the numbers mean

- **Size**: bytes of the objects each tool left in its bucket after a cold `sync` of the family's
  folder (metadata headers not counted). *raw xdelta3 -9* is the engine's limit with one
  reference per family: the first version whole, every later one as `xdelta3 -e -9 -D -R`
  against it, or whole when that is not smaller. *reads back own / ours*: how many files
  `deltaglider cp` rebuilds bit-exact from its own bucket and from dg-agent's; *dg-agent reads
  deltaglider's*: the same the other way round.
- **Sync speed**: wall time of a cold `sync` (empty bucket, empty reference cache) of one family
  folder, each tool as a fresh process, and in brackets its CPU seconds (the tool's process and
  its `xdelta3` children, not the S3 server's), which other load on a shared machine disturbs far
  less than wall time. *boto3 upload* is `upload_file` of each file in the benchmark's process
  (no start-up): the floor for any uploader; *plain copy* the same for a folder.
- **Restore**: `cp` of the newest version back to disk, checked bit-exact. Cold: an empty
  reference cache; warm: the same command again with the cache the cold run filled. DeltaGlider
  6.2.0 keeps its cache in a per-process temp dir, so its warm run is another cold one.
- **Engine overhead**: every later version stored through dg-agent's `DeltaStore` in process,
  against the sum of the same steps timed alone (SHA-256, `xdelta3` encode, decode + SHA-256
  check, one upload of what was stored). 1.0x would be a pipeline with no overhead at all.
- **Agent**: a real `dg-agent run` with default settings and three watched folders. Latency runs
  from the moment a file is closed in a watched folder to the agent's `file.stored` event, and
  includes the settle window (a file is stored once it stops changing). Reconcile: a `rescan`
  of every watched file when nothing changed, and the S3 requests it made (from `status`).
  Idle: resident memory and CPU time of the agent process over a quiet window.
- **Long release series**: the stored bytes of each reference policy on one long series, in
  release order. `single` (one reference per folder, DeltaGlider's behaviour) and `rotate` (a new
  reference once the deltas have drifted, engine/rotation.py) are each a cold `dg-agent sync
  --reference-policy P` into a local `file://` store with an empty cache: object bytes (not the
  metadata sidecars), versions stored whole, references, and the `xdelta3` encodes and decodes
  the process ran. The simulations apply the same rule (`rotation.decide`, same codec and
  settings) to xdelta3 encodes made directly, with no store: whole references plus deltas, and
  *measured / predicted* compares a policy's store with its simulation (each reference also
  costs a zero-diff delta of a few hundred bytes the simulation leaves out). The chain (each
  version against the previous one) is the bound of a store whose deltas may chain, which
  DeltaGlider cannot read. The simulations' encode seconds are summed per strategy. Read back:
  `dg-agent verify -r` of the rotate store with an empty cache, each SHA-256 compared with the
  source file's.
- **Bucket scale**: `ls -r`, `stats`, a `sync` of an unchanged folder and `rm -r` of a bucket of
  many objects, each tool as a fresh process pointed at a proxy that counts its S3 requests by
  operation (POST is DeleteObjects). Each tool stores two real versions in each DeltaSpace; the
  newest delta is then copied, metadata and all, until the bucket is full, and the local folder
  gets a hard link of that version per copy. dg-agent keeps what a HEAD told it in a local cache
  keyed by ETag: its first `ls -r` runs with an empty cache (cold), the later commands with the
  cache that run filled (warm). DeltaGlider 6.2.0's `ls -r` shows stored sizes and reads no
  metadata; its default `stats` reads none either, so it has no original sizes (`--detailed`
  HEADs every delta for them). The `--version` rows are the start-up every command pays;
  *boto3* lists in the benchmark's own process. *result*: the files a command listed or counted,
  the files `sync` uploaded, or the objects `rm -r` left.

## Latest run

"""


NOTES = "\n## Notes\n"
"""Everything from this heading on is written by hand and kept when a run rewrites the page."""


def performance_doc(table: str, previous: str = "") -> str:
    r"""The page for ``table``, keeping the hand-written notes of the ``previous`` page.

    >>> page = performance_doc("| t |\n", "old" + NOTES + "kept\n")
    >>> page.endswith("| t |\n" + NOTES + "kept\n")
    True
    """
    _, found, notes = previous.partition(NOTES)
    return DOC_HEAD + table + (found + notes if found else "")
