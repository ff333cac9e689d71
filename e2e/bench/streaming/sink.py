#!/usr/bin/env python3
"""Checks a streaming run's Parquet sink, and reads its end-to-end latency off it afterwards
(e2e/bench/streaming/run.sh).

    sink.py spark|kglue SINK_DIR --produced FILE [--pages 8] [--latency-from-id W] [--out FILE]

Only committed files count, as a reader of each engine sees them:
  spark  the files listed in the sink log, _spark_metadata/<batch> (Spark writes data files
         straight into the table folder; a reader that honours the log, as Spark and Glue do,
         sees a file only once its batch's log exists). Visible time = the mtime of the first
         log file that lists it (written to a temporary file and renamed, so ~ the commit).
  kglue  the part-*.parquet files outside `_`-prefixed folders: a batch stages its files under
         _kglue_staging/, creates its record in _kglue_checkpoint/, then renames the files into
         place. Visible time = the file's ctime (a rename sets ctime; mtime stays at the staged
         write). The batch record's time has whole seconds only, too coarse for a percentile.

The check (exit 1 and a message if it fails): the sink holds each event the producer sent exactly
once, compared by Kafka partition and offset (each partition's offsets 0..end-1 once each, the
ends from produce.py's `ends`) and by id (0..sent-1 once each), and each row sits in the page
folder of its id (page = 'p' || id % pages).

The latency of a row: visible time - ts_ms (the time its event was due at the producer), over the
rows with id >= W (the events after the warm-up phase). Sustained rate: the measured rows that the
batches after the first one holding any made visible, up to the one before the last, over the
time from that first batch's commit to that one's: the input rate if the engine keeps up, less if
it falls behind. (The last batch is left out: it holds only the events sent before the producer
stopped, not a whole trigger interval's.) Also those rows / (the last one visible - the first one
due), which counts the last batch's latency in.

Prints one JSON object (also to --out). Reads Parquet with DuckDB.
"""
import argparse
import json
import os
import re
import sys
from urllib.parse import unquote, urlparse

import duckdb


def spark_files(sink):
    """{file: visible time in s} from _spark_metadata, and {file: batch}; each file at its first batch."""
    log = os.path.join(sink, "_spark_metadata")
    if not os.path.isdir(log):
        return {}, {}, 0
    batches = []
    for name in os.listdir(log):
        m = re.fullmatch(r"(\d+)(\.compact)?", name)
        if m:
            batches.append((int(m.group(1)), name))
    visible, batch_of = {}, {}
    for batch, name in sorted(batches):
        path = os.path.join(log, name)
        t = os.stat(path).st_mtime_ns / 1e9
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue  # the "v1" header
                entry = json.loads(line)
                if entry.get("action") != "add":
                    continue
                file = unquote(urlparse(entry["path"]).path)
                if file not in visible:
                    visible[file], batch_of[file] = t, batch
    # Data files in the table folder that no log lists: an aborted batch's, never read.
    unlisted = 0
    for root, dirs, files in os.walk(sink):
        dirs[:] = [d for d in dirs if not d.startswith("_")]
        unlisted += sum(1 for n in files if n.endswith(".parquet") and os.path.join(root, n) not in visible)
    return visible, batch_of, unlisted


def kglue_files(sink):
    visible, batch_of = {}, {}
    for root, dirs, files in os.walk(sink):
        dirs[:] = [d for d in dirs if not d.startswith("_")]  # checkpoint, staging, dead letter
        for name in files:
            m = re.match(r"part-.*?-b(\d+)-.*\.parquet$", name)
            if m:
                path = os.path.join(root, name)
                visible[path] = os.stat(path).st_ctime_ns / 1e9
                batch_of[path] = int(m.group(1))
    staged = 0
    staging = os.path.join(sink, "_kglue_staging")
    for _root, _dirs, files in os.walk(staging):
        staged += len(files)
    return visible, batch_of, staged


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine", choices=["spark", "kglue"])
    ap.add_argument("sink")
    ap.add_argument("--produced", required=True, help="produce.py's result: sent and ends")
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--latency-from-id", type=int, help="measure latency over ids >= this")
    ap.add_argument("--out")
    args = ap.parse_args()

    with open(args.produced) as f:
        produced = json.load(f)
    sent = produced["sent"]
    ends = {int(p): int(e) for p, e in produced["ends"].items()}

    if args.engine == "spark":
        visible, batch_of, stray = spark_files(args.sink)
    else:
        visible, batch_of, stray = kglue_files(args.sink)
    problems = []
    out = {"engine": args.engine, "files": len(visible), "batches": len(set(batch_of.values())),
           # spark: data files no sink log lists (aborted batches); kglue: files left staged.
           "stray_files": stray}
    con = duckdb.connect()
    con.execute("CREATE TABLE v (file VARCHAR, visible_s DOUBLE)")
    if visible:
        con.executemany("INSERT INTO v VALUES (?, ?)", list(visible.items()))
        con.execute("""CREATE TABLE r AS
                       SELECT p.id, p.ts_ms, p."partition" AS part, p."offset" AS off, p.page, v.visible_s
                       FROM read_parquet(?, filename = true, hive_partitioning = true) p
                       JOIN v ON p.filename = v.file""", [list(visible)])
    else:
        con.execute("CREATE TABLE r (id BIGINT, ts_ms BIGINT, part INT, off BIGINT, page VARCHAR, visible_s DOUBLE)")
        problems.append(f"no committed Parquet files under {args.sink}")

    rows, ids, min_id, max_id, misplaced, null_ids = con.execute(
        """SELECT count(*), count(DISTINCT id), min(id), max(id),
                  count(*) FILTER (WHERE page IS DISTINCT FROM 'p' || (id % ?)::VARCHAR),
                  count(*) FILTER (WHERE id IS NULL)
           FROM r""", [args.pages]).fetchone()
    out.update({"rows": rows, "distinct_ids": ids, "expected": sent})
    if rows != sent or ids != sent or (sent and (min_id != 0 or max_id != sent - 1)):
        problems.append(f"expected ids 0..{sent - 1} once each ({sent} rows); found {rows} rows, {ids} distinct "
                        f"ids from {min_id} to {max_id}" + (f", {null_ids} without an id" if null_ids else ""))
    if misplaced:
        problems.append(f"{misplaced} rows are not in the page folder of their id")
    per_partition = {p: (n, d, lo, hi) for p, n, d, lo, hi in con.execute(
        """SELECT part, count(*), count(DISTINCT off), min(off), max(off) FROM r GROUP BY part""").fetchall()}
    for p in sorted(set(ends) | set(per_partition)):
        end = ends.get(p, 0)
        n, d, lo, hi = per_partition.get(p, (0, 0, None, None))
        if not (n == d == end and (end == 0 or (lo == 0 and hi == end - 1))):
            problems.append(f"partition {p}: expected offsets 0..{end - 1} once each; found {n} rows, "
                            f"{d} distinct offsets from {lo} to {hi}")
    if sum(ends.values()) != sent:
        problems.append(f"the topic holds {sum(ends.values())} records, the producer sent {sent}")

    if args.latency_from_id is not None and rows:
        p50, p90, p99, mx, n, first_due, last_visible = con.execute(
            """SELECT quantile_disc(lat, 0.5), quantile_disc(lat, 0.9), quantile_disc(lat, 0.99), max(lat),
                      count(*), min(ts_ms) / 1000, max(visible_s)
               FROM (SELECT id, ts_ms, visible_s, visible_s * 1000 - ts_ms AS lat FROM r WHERE id >= ?)""",
            [args.latency_from_id]).fetchone()
        # Sustained rate: the measured rows the batches after the first (that holds any) made
        # visible, over the time from that first batch's commit to the last one's. An engine that
        # keeps up delivers the input rate; one that falls behind, less.
        con.execute("CREATE TABLE b (file VARCHAR, batch BIGINT)")
        con.executemany("INSERT INTO b VALUES (?, ?)", list(batch_of.items()))
        commits = con.execute(
            """SELECT max(v.visible_s), count(*) FILTER (WHERE p.id >= ?)
               FROM read_parquet(?, filename = true, hive_partitioning = false) p
               JOIN v ON p.filename = v.file JOIN b ON p.filename = b.file
               GROUP BY b.batch HAVING count(*) FILTER (WHERE p.id >= ?) > 0 ORDER BY 1""",
            [args.latency_from_id, list(visible), args.latency_from_id]).fetchall()
        sustained = None
        if len(commits) >= 3 and commits[-2][0] > commits[0][0]:
            sustained = round(sum(c for _, c in commits[1:-1]) / (commits[-2][0] - commits[0][0]), 1)
        if n:
            out["latency"] = {"from_id": args.latency_from_id, "rows": n,
                              "p50_ms": round(p50), "p90_ms": round(p90), "p99_ms": round(p99), "max_ms": round(mx),
                              "sustained_rate": sustained, "measured_batches": len(commits),
                              "first_due_to_last_visible_rate": round(n / (last_visible - first_due), 1)}
        else:
            problems.append(f"no rows with id >= {args.latency_from_id} to measure latency over")
    out["ok"] = not problems
    out["problems"] = problems
    text = json.dumps(out)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    for problem in problems:
        print(f"sink.py: {args.engine} {args.sink}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
