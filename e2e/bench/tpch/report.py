#!/usr/bin/env python3
"""Record one run, and summarise the runs of one workload at one scale factor as a table with
ratios to kglue.

    report.py merge MEASURE_JSON VERIFY_JSON|- OUT_JSON LOG
                    one run: measure.py's and verify.py's output in one file, with the phase
                    timings kglue printed in LOG (`phases: plan 0.01s, …`); prints a summary line
    report.py table RESULTS_DIR WORKLOAD SCALE_FACTOR ENGINE[,ENGINE...]

RESULTS_DIR holds <workload>-sf<SF>-<engine>-<run>.json (measure.py's output with verify.py's
under "verify"). Each figure is the median over the runs of that engine (wall, CPU and peak RSS
separately). Ratios are engine / kglue: a wall ratio of 5.0 for PySpark means kglue took a fifth
of PySpark's time. Prints a Markdown table and the target checks (wall time against each peer,
and kglue's peak RSS against DuckDB's and Polars'); writes the same to
RESULTS_DIR/<workload>-sf<SF>.md.
"""

import glob
import json
import os
import statistics
import sys

# kglue's targets, as ratios peer wall / kglue wall that must be reached.
TARGETS = {
    "pyspark": (5.0, "5x or more faster than PySpark"),
    "duckdb": (1.0, "not slower than DuckDB"),
    "polars": (1.0, "not slower than Polars"),
}
# ...and kglue's peak RSS must not exceed the smallest of these engines' (medians).
MEMORY_PEERS = ("duckdb", "polars")

# The first line of each workload's table (see engines.py for the jobs).
TITLES = {
    "transcode": "lineitem CSV -> Parquet by ship_month",
    "curate": "curate: versioned orders CSV, latest version joined to lineitem CSV -> detail Parquet by ship_month + summary Parquet",
    "flatten": "flatten: orders JSON lines with nested items -> one row per item, Parquet by ship_month",
}


def load(results, workload, sf, engine):
    runs = []
    prefix = f"{workload}-sf{sf}-{engine}-"
    for path in sorted(glob.glob(os.path.join(results, prefix + "*.json"))):
        # <prefix><run>.json only: kglue's files are not kglue-w2's.
        if not os.path.basename(path)[len(prefix) : -len(".json")].isdigit():
            continue
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def phases(log_file):
    """kglue's `phases: plan 0.01s, execute 1.20s, …` line of a run's log, as {phase: seconds}."""
    try:
        with open(log_file, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip().startswith("phases: ")]
    except OSError:
        return {}
    if not lines:
        return {}
    found = {}
    for part in lines[-1][len("phases: ") :].split(","):
        name, _, seconds = part.strip().rpartition(" ")
        try:
            found[name] = float(seconds.rstrip("s"))
        except ValueError:
            pass
    return found


def merge(measure_file, verify_file, out_file, log_file):
    with open(measure_file) as f:
        run = json.load(f)
    run["phases"] = phases(log_file)
    if verify_file == "-":
        run["verify"] = {"rows": 0, "partitions": 0, "failures": [f"the run failed (exit {run['exit_code']})"]}
    else:
        try:
            with open(verify_file) as f:
                run["verify"] = json.load(f)
        except (OSError, ValueError):
            # verify.py itself failed (its error is on run.sh's stderr): the run counts as wrong.
            run["verify"] = {"rows": 0, "partitions": 0, "failures": ["verify.py could not check the output"]}
    with open(out_file, "w") as f:
        json.dump(run, f)
    v = run["verify"]
    line = f"{run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s CPU, {run['peak_rss_mib']:.0f} MiB peak RSS, {v['rows']:,} rows"
    if "partitions" in v:
        line += f" in {v['partitions']} partitions"
    if run["phases"]:
        line += " (kglue phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in run["phases"].items()) + ")"
    print("; ".join([line] + v["failures"]))


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "merge":
        merge(*sys.argv[2:])
        return 0
    if len(sys.argv) != 6 or sys.argv[1] != "table" or sys.argv[3] not in TITLES:
        sys.exit(__doc__)
    results, workload, sf, engines = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(",")
    rows = {}
    for engine in engines:
        runs = load(results, workload, sf, engine)
        ok = [r for r in runs if r["exit_code"] == 0 and not r.get("verify", {}).get("failures", ["missing"])]
        if not runs:
            continue
        if len(ok) != len(runs):
            rows[engine] = {"failed": len(runs) - len(ok), "runs": len(runs)}
            continue
        last = ok[-1]["verify"]
        rows[engine] = {
            "runs": len(ok),
            "wall": statistics.median(r["wall_s"] for r in ok),
            "wall_all": [r["wall_s"] for r in ok],
            "cpu": statistics.median(r["cpu_s"] for r in ok),
            "rss": statistics.median(r["peak_rss_mib"] for r in ok),
            "rows": last["rows"],
            "partitions": last["partitions"],
            "files": last["files"],
            "mib": last["output_bytes"] / 2**20,
            "phases": {
                k: statistics.median(r["phases"].get(k, 0.0) for r in ok)
                for k in sorted({k for r in ok for k in r.get("phases", {})})
            },
        }
    runs = max((r["runs"] for r in rows.values()), default=0)
    base = rows.get("kglue") if "failed" not in rows.get("kglue", {"failed": 1}) else None
    lines = [
        f"TPC-H SF{sf} {TITLES[workload]}, 2 threads each; median of {runs} run(s) per engine, engines alternating",
        "",
        "| engine | wall s | CPU s | peak RSS MiB | rows | partitions | files | output MiB | wall / kglue | CPU / kglue | runs (wall s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for engine in engines:
        row = rows.get(engine)
        if row is None:
            continue
        if "failed" in row:
            lines.append(f"| {engine} | FAILED ({row['failed']} of {row['runs']} runs) | | | | | | | | | |")
            continue
        wall_ratio = f"{row['wall'] / base['wall']:.2f}" if base else "-"
        cpu_ratio = f"{row['cpu'] / base['cpu']:.2f}" if base else "-"
        lines.append(
            f"| {engine} | {row['wall']:.1f} | {row['cpu']:.1f} | {row['rss']:.0f} | {row['rows']:,} | "
            f"{row['partitions']} | {row['files']} | {row['mib']:.0f} | {wall_ratio} | {cpu_ratio} | "
            f"{', '.join(f'{w:.1f}' for w in row['wall_all'])} |"
        )
    if base and base["phases"]:
        lines.append("")
        lines.append("kglue phases (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in base["phases"].items()))
    if base:
        lines.append("")
        for engine, (target, words) in TARGETS.items():
            row = rows.get(engine)
            if row is None or "failed" in row:
                continue
            ratio = row["wall"] / base["wall"]
            verdict = "met" if ratio >= target else "MISSED"
            lines.append(f"- kglue {words}: {engine} / kglue wall = {ratio:.2f} (needs >= {target:.2f}): {verdict}")
        peers = {e: rows[e]["rss"] for e in MEMORY_PEERS if e in rows and "failed" not in rows[e]}
        if peers:
            least = min(peers.values())
            verdict = "met" if base["rss"] <= least else "MISSED"
            lines.append(
                f"- kglue's peak RSS no more than the least of {', '.join(peers)}: kglue {base['rss']:.0f} MiB, "
                + ", ".join(f"{e} {rss:.0f} MiB" for e, rss in peers.items())
                + f" (needs <= {least:.0f}): {verdict}"
            )
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(results, f"{workload}-sf{sf}.md"), "w") as f:
        f.write(text + "\n")
    failed = [e for e, r in rows.items() if "failed" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
