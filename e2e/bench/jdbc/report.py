#!/usr/bin/env python3
"""Record the runs of the PostgreSQL benchmark and summarise them per direction, with ratios to kglue.

    report.py server-cpu PID
        CPU seconds the PostgreSQL server whose postmaster is PID has used so far: the postmaster,
        its live children and the children it has reaped (each session's backend)
    report.py merge MEASURE_JSON VERIFY_JSON|- SERVER_CPU_BEFORE SERVER_CPU_AFTER OUT_JSON LOG
        one run: measure.py's and verify.py's output in one file, with the server's CPU during the
        run and kglue's phase timings from LOG; prints a summary line
    report.py table RESULTS_DIR SCALE_FACTOR read|write ENGINE[,ENGINE...]

RESULTS_DIR holds sf<SF>-<direction>-<engine>-<run>.json and versions.json. Each figure is the
median over the runs of that engine (wall, CPU, server CPU and peak RSS separately). Ratios are
engine / kglue: a wall ratio of 5.0 for PySpark means kglue took a fifth of PySpark's time. Prints
a Markdown table; writes the same to RESULTS_DIR/sf<SF>-<direction>.md.
"""

import json
import os
import statistics
import sys

from bench import tpch

tpch_report = tpch("report")
CLK_TCK = os.sysconf("SC_CLK_TCK")

TITLES = {
    "read": "PostgreSQL table -> Snappy Parquet partitioned by ship_month, {partitions} parallel reads on l_orderkey",
    "write": "Snappy Parquet -> a new PostgreSQL table (created by the engine, dropped before each run)",
}


def server_cpu(postmaster):
    """CPU seconds of the postmaster and its children so far. Each child leads a session of its
    own, so they are found by parentage; the backends of closed sessions were reaped by the
    postmaster and count in its cutime and cstime."""
    with open(f"/proc/{postmaster}/task/{postmaster}/children") as f:
        pids = [postmaster] + [int(pid) for pid in f.read().split()]
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # ended since: the postmaster's cutime has it once reaped
        # After the command name: field 3 (state) first; utime, stime, cutime, cstime are 14-17.
        ticks += sum(int(v) for v in stat[stat.rfind(b")") + 2 :].split()[11:15])
    return ticks / CLK_TCK


def merge(measure_file, verify_file, before, after, out_file, log_file):
    """tpch's record of a run, with the server's CPU during it."""
    with open(measure_file) as f:
        run = json.load(f)
    run["server_cpu_s"] = round(float(after) - float(before), 3)
    with open(measure_file, "w") as f:
        json.dump(run, f)
    tpch_report.merge(measure_file, verify_file, out_file, log_file)


def summarise(runs):
    ok = [r for r in runs if r["exit_code"] == 0 and not r.get("verify", {}).get("failures", ["missing"])]
    if len(ok) != len(runs):
        return {"failed": len(runs) - len(ok), "runs": len(runs)}
    last = ok[-1]["verify"]
    return {
        "runs": len(ok),
        "wall": statistics.median(r["wall_s"] for r in ok),
        "wall_all": [r["wall_s"] for r in ok],
        "cpu": statistics.median(r["cpu_s"] for r in ok),
        "server_cpu": statistics.median(r["server_cpu_s"] for r in ok),
        "rss": statistics.median(r["peak_rss_mib"] for r in ok),
        "verify": last,
        "phases": {
            k: statistics.median(r["phases"].get(k, 0.0) for r in ok)
            for k in sorted({k for r in ok for k in r.get("phases", {})})
        },
    }


def table(results, sf, direction, engines):
    rows = {}
    for engine in engines:
        runs = tpch_report.load(results, sf, f"{direction}-{engine}")
        if runs:
            rows[engine] = summarise(runs)
    with open(os.path.join(results, "versions.json")) as f:
        versions = json.load(f)
    runs = max((r["runs"] for r in rows.values()), default=0)
    base = rows.get("kglue") if "failed" not in rows.get("kglue", {"failed": 1}) else None
    if direction == "read":
        extra_heads, extra_rule = ["partitions", "files", "output MiB"], "---:|---:|---:|"
    else:
        extra_heads, extra_rule = ["table MiB"], "---:|"
    lines = [
        f"SF{sf} lineitem, {TITLES[direction].format(partitions=versions.get('partitions', '?'))}; "
        f"median of {runs} run(s) per engine, engines alternating",
        "",
        "| engine | wall s | CPU s | PostgreSQL CPU s | peak RSS MiB | rows | "
        + " | ".join(extra_heads)
        + " | wall / kglue | CPU / kglue | runs (wall s) |",
        "|---|---:|---:|---:|---:|---:|" + extra_rule + "---:|---:|---|",
    ]
    for engine in engines:
        row = rows.get(engine)
        if row is None:
            continue
        if "failed" in row:
            lines.append(f"| {engine} | FAILED ({row['failed']} of {row['runs']} runs) |" + " |" * (7 + len(extra_heads)))
            continue
        v = row["verify"]
        if direction == "read":
            extra = [str(v["partitions"]), str(v["files"]), f"{v['output_bytes'] / 2**20:.0f}"]
        else:
            extra = [f"{v['table_bytes'] / 2**20:.0f}"]
        wall_ratio = f"{row['wall'] / base['wall']:.2f}" if base else "-"
        cpu_ratio = f"{row['cpu'] / base['cpu']:.2f}" if base else "-"
        lines.append(
            f"| {engine} | {row['wall']:.1f} | {row['cpu']:.1f} | {row['server_cpu']:.1f} | {row['rss']:.0f} | "
            f"{v['rows']:,} | " + " | ".join(extra) + f" | {wall_ratio} | {cpu_ratio} | "
            f"{', '.join(f'{w:.1f}' for w in row['wall_all'])} |"
        )
    if base and base["phases"]:
        lines.append("")
        lines.append("kglue phases (median s): " + ", ".join(f"{k} {s:.2f}" for k, s in base["phases"].items()))
    if direction == "write":
        lines.append("")
        for engine, row in rows.items():
            if "failed" not in row:
                lines.append(f"- {engine} created {row['verify'].get('types', '?')}")
    lines.append("")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "partitions"))
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(results, f"sf{sf}-{direction}.md"), "w") as f:
        f.write(text + "\n")
    return 1 if any("failed" in r for r in rows.values()) else 0


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "server-cpu":
        print(f"{server_cpu(int(args[1])):.2f}")
        return 0
    if len(args) == 7 and args[0] == "merge":
        merge(*args[1:])
        return 0
    if len(args) == 5 and args[0] == "table" and args[3] in TITLES:
        return table(args[1], args[2], args[3], args[4].split(","))
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
