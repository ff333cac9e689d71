#!/usr/bin/env python3
"""Record one run of the streaming benchmark, and summarise all runs as a table (run.sh).

    report.py merge OUT_JSON PHASE ENGINE MEASURE_JSON SINK_JSON|- [ENGINE_JSON|-]
                    [PRODUCER_JSON PRODUCER_MEASURE_JSON]
        one run in one file: measure.py's figures for the engine's process tree, sink.py's
        check (and latency), the engine's own report (spark_stream.py's result; kglue's batch
        lines) and, for the fixed-rate phase, the producer's; prints a summary line
    report.py table RESULTS_DIR
    report.py rows KGLUE_LOG     the records of the batches kglue run --json reported so far

RESULTS_DIR holds settings.json (run.sh's options) and <phase>-<engine>-<run>.json, phase
`throughput` (the backlog read to its end) or `latency` (the fixed input rate). Every figure is
the median over the engine's runs that passed their check, each figure on its own. Prints a
Markdown table and kglue's targets, and writes the same to RESULTS_DIR/summary.md.
"""

import glob
import json
import os
import statistics
import sys

ENGINES = {"kglue": "kglue", "spark": "PySpark"}


def read_json(path):
    if path == "-":
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def kglue_batches(path):
    """kglue run --json's batch lines: records, and the seconds of each batch."""
    batches = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(entry, dict) and "runId" in entry:  # not measure.py's line
                        batches.append(entry)
    except OSError:
        pass
    return {"rows": sum(b.get("records", 0) for b in batches), "batches": len(batches),
            "batch_seconds": [round(b.get("seconds", 0), 3) for b in batches]}


def merge(out, phase, engine, measure, sink, engine_json="-", producer="-", producer_measure="-"):
    run = {"phase": phase, "engine": engine, "measure": read_json(measure), "sink": read_json(sink)}
    if engine == "spark":
        run["engine_report"] = read_json(engine_json)
    elif engine_json != "-":
        run["engine_report"] = kglue_batches(engine_json)
    if producer != "-":
        run["producer"] = read_json(producer)
        run["producer_measure"] = read_json(producer_measure)
    m, s = run["measure"] or {}, run["sink"] or {}
    problems = list(s.get("problems", []))
    if not m:
        problems.append("no measurement")
    elif m.get("exit_code") != 0:
        problems.append(f"exited with {m.get('exit_code')}" + (" (timed out)" if m.get("timed_out") else ""))
    if not run["sink"]:
        problems.append("its sink was not checked")
    run["ok"] = not problems
    run["problems"] = problems
    with open(out, "w") as f:
        json.dump(run, f)
    parts = []
    if m:
        parts.append(f"{m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} s CPU, {m['peak_rss_mib']:.0f} MiB peak RSS")
    if s:
        parts.append(f"{s.get('rows', 0):,} rows in {s.get('files', 0)} files, {s.get('batches', 0)} batches")
    lat = s.get("latency")
    if lat:
        parts.append(f"latency p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, sustained {fmt(lat['sustained_rate'])}/s")
    er = run.get("engine_report") or {}
    if engine == "spark" and er:
        parts.append(f"Spark startup {er.get('startup_s')} s, query {er.get('query_s')} s")
    p = run.get("producer")
    if p:
        parts.append(f"producer {p['rate']:,.0f}/s, at most {p['max_behind_ms']:.0f} ms behind")
    print("; ".join(parts + problems))
    return 0


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0, unit=""):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{unit}"


def table(results):
    with open(os.path.join(results, "settings.json")) as f:
        settings = json.load(f)
    engines = settings["engines"]
    runs = {}
    failed = {}
    for path in sorted(glob.glob(os.path.join(results, "*-*-*.json"))):
        run = read_json(path)
        if not run or "phase" not in run:
            continue
        key = (run["phase"], run["engine"])
        if run.get("ok"):
            runs.setdefault(key, []).append(run)
        else:
            failed[key] = failed.get(key, 0) + 1

    def fig(phase, engine, get):
        values = []
        for run in runs.get((phase, engine), []):
            try:
                values.append(get(run))
            except (KeyError, TypeError, ZeroDivisionError):
                values.append(None)
        return median(values)

    def tput_wall(r):
        return r["sink"]["rows"] / r["measure"]["wall_s"]

    def tput_query(r):
        return r["sink"]["rows"] / r["engine_report"]["query_s"]

    rows = []  # (label, {engine: text})

    def row(label, phase, get, digits=0, unit="", only=None):
        rows.append((label, {e: (fmt(fig(phase, e, get), digits, unit) if only in (None, e) else "–") for e in engines}))

    cap = settings["max_batch"]
    backlog, rate, window = settings["backlog"], settings["rate"], settings["window"]
    if settings["phases"]["throughput"]:
        row("Throughput, events/s (rows / whole process wall)", "throughput", tput_wall)
        row("Throughput, events/s (rows / query time, no JVM start)", "throughput", tput_query, only="spark")
        row("  backlog wall, s", "throughput", lambda r: r["measure"]["wall_s"], 1)
        row("  Spark start-up (JVM, SparkContext), s", "throughput", lambda r: r["engine_report"]["startup_s"], 1,
            only="spark")
        row("  CPU, s", "throughput", lambda r: r["measure"]["cpu_s"], 1)
        row("  peak RSS, MiB", "throughput", lambda r: r["measure"]["peak_rss_mib"])
        row("  batches / files written", "throughput", lambda r: r["sink"]["batches"])
        rows[-1] = (rows[-1][0], {e: f"{fmt(fig('throughput', e, lambda r: r['sink']['batches']))} / "
                                     f"{fmt(fig('throughput', e, lambda r: r['sink']['files']))}" for e in engines})
    if settings["phases"]["latency"]:
        row("Latency p50, ms (event due → row visible)", "latency", lambda r: r["sink"]["latency"]["p50_ms"])
        row("Latency p99, ms", "latency", lambda r: r["sink"]["latency"]["p99_ms"])
        row("Latency max, ms", "latency", lambda r: r["sink"]["latency"]["max_ms"])
        row("Sustained rate, events/s (measured phase, commit to commit)", "latency", lambda r: r["sink"]["latency"]["sustained_rate"])
        row("Peak RSS at the fixed rate, MiB", "latency", lambda r: r["measure"]["peak_rss_mib"])
        row("  CPU over the fixed-rate run, s", "latency", lambda r: r["measure"]["cpu_s"], 1)
        row("  batches / files written", "latency", lambda r: r["sink"]["batches"])
        rows[-1] = (rows[-1][0], {e: f"{fmt(fig('latency', e, lambda r: r['sink']['batches']))} / "
                                     f"{fmt(fig('latency', e, lambda r: r['sink']['files']))}" for e in engines})
        row("  producer: achieved rate, events/s", "latency", lambda r: r["producer"]["rate"])
        row("  producer: most behind schedule, ms", "latency", lambda r: r["producer"]["max_behind_ms"])
        row("  producer: CPU, s", "latency", lambda r: r["producer_measure"]["cpu_s"], 1)
    rows.append(("runs passed (failed)", {
        e: " / ".join(f"{len(runs.get((p, e), []))} ({failed.get((p, e), 0)})"
                      for p in ("throughput", "latency") if settings["phases"][p]) for e in engines}))

    lines = []
    desc = []
    if settings["phases"]["throughput"]:
        desc.append(f"throughput: a backlog of {backlog:,} events read to its end (kglue --until-caught-up, "
                    f"Spark trigger(availableNow=True))")
    if settings["phases"]["latency"]:
        desc.append(f"latency: {rate:,} events/s for {settings['warmup']} s of warm-up (not measured) + "
                    f"{settings['duration']} s measured")
    batch = (f"batch cap {cap:,} records (kglue maxRecordsPerBatch = Spark maxOffsetsPerTrigger)" if cap
             else "batches uncapped (no maxRecordsPerBatch, no maxOffsetsPerTrigger)")
    lines.append(f"Streaming: Kafka JSON -> Parquet partitioned by page ({settings['pages']} values), "
                 f"{settings['partitions']} Kafka partitions, window/trigger {window} s, {batch}; "
                 + "; ".join(desc) + f". {settings['cpus']} CPUs; medians of {settings['runs']} run(s).")
    v = settings.get("versions", {})
    if v:
        lines.append("Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".")
    lines.append("")
    header = ["", *[ENGINES[e] for e in engines]]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * len(engines)) + "|")
    for label, values in rows:
        lines.append(f"| {label} | " + " | ".join(values[e] for e in engines) + " |")
    lines.append("")

    # kglue's targets (issue 17).
    checks = []
    if "kglue" in engines and "spark" in engines and settings["phases"]["throughput"]:
        k, s = fig("throughput", "kglue", tput_wall), fig("throughput", "spark", tput_wall)
        if k and s:
            checks.append(f"throughput ≥ 5× Spark's (whole process): {k / s:.1f}× — {'met' if k / s >= 5 else 'NOT met'}")
        sq = fig("throughput", "spark", tput_query)
        if k and sq:
            checks.append(f"  (against Spark's query time alone: {k / sq:.1f}×)")
    if "kglue" in engines and settings["phases"]["latency"]:
        p99 = fig("latency", "kglue", lambda r: r["sink"]["latency"]["p99_ms"])
        limit = (window + 1) * 1000
        if p99 is not None:
            checks.append(f"p99 latency < windowSeconds + 1 s = {limit:,} ms: {p99:,.0f} ms — "
                          f"{'met' if p99 < limit else 'NOT met'}")
        rss = fig("latency", "kglue", lambda r: r["measure"]["peak_rss_mib"])
        if rss is not None:
            checks.append(f"runner peak RSS < 256 MiB at {rate:,} events/s: {rss:,.0f} MiB — "
                          f"{'met' if rss < 256 else 'NOT met'}"
                          + ("" if rate == 20000 else " (the target is stated at 20,000 events/s)"))
    if checks:
        lines.append("kglue's targets:")
        lines.extend(f"- {c}" for c in checks)
    text = "\n".join(lines)
    with open(os.path.join(results, "summary.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


def main():
    if len(sys.argv) >= 7 and sys.argv[1] == "merge":
        return merge(*sys.argv[2:])
    if len(sys.argv) == 3 and sys.argv[1] == "rows":
        print(kglue_batches(sys.argv[2])["rows"])
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "table":
        return table(sys.argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
