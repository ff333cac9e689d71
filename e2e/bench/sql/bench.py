#!/usr/bin/env python3
"""The SQL benchmark's steps (e2e/bench/sql/run.sh): the lineitem Parquet and its catalog, DuckDB's
side of a query, and the check that both engines gave the same answer.

    bench.py parquet CSV_DIR OUT_DIR      lineitem as Snappy Parquet partitioned by ship_month (as
                                          the ETL benchmark's job writes it), typed as the Table
    bench.py catalog PARQUET_DIR OUT_DIR  a catalog directory: Database tpch, Table lineitem
    bench.py duckdb PARQUET_DIR QUERY     run QUERY (a .sql file) in DuckDB with 2 threads; CSV out
    bench.py compare A.csv B.csv          the same rows; numbers equal to the sixth decimal (kglue
                                          averages decimals at scale + 4, DuckDB in doubles)
    bench.py line MEASURE_JSON            one run's figures as a line
"""

import csv
import math
import sys

import duckdb

COLUMNS = [
    ("l_orderkey", "BIGINT", "bigint"),
    ("l_partkey", "BIGINT", "bigint"),
    ("l_suppkey", "BIGINT", "bigint"),
    ("l_linenumber", "INTEGER", "int"),
    ("l_quantity", "DECIMAL(15,2)", "decimal(15,2)"),
    ("l_extendedprice", "DECIMAL(15,2)", "decimal(15,2)"),
    ("l_discount", "DECIMAL(15,2)", "decimal(15,2)"),
    ("l_tax", "DECIMAL(15,2)", "decimal(15,2)"),
    ("l_returnflag", "VARCHAR", "string"),
    ("l_linestatus", "VARCHAR", "string"),
    ("l_shipdate", "DATE", "date"),
    ("l_commitdate", "DATE", "date"),
    ("l_receiptdate", "DATE", "date"),
    ("l_shipinstruct", "VARCHAR", "string"),
    ("l_shipmode", "VARCHAR", "string"),
    ("l_comment", "VARCHAR", "string"),
]
THREADS = 2


def parquet(csv_dir, out_dir):
    columns = ", ".join(f"'{name}': '{duck}'" for name, duck, _ in COLUMNS)
    duckdb.sql(
        f"""COPY (SELECT *, strftime(l_shipdate, '%Y-%m') AS ship_month
                 FROM read_csv('{csv_dir}/*.csv', header = true, columns = {{{columns}}}))
            TO '{out_dir}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (ship_month))"""
    )


def catalog(parquet_dir, out_dir):
    columns = "\n".join(f"    - {{name: {name}, type: '{glue}'}}" for name, _, glue in COLUMNS)
    with open(f"{out_dir}/catalog.yaml", "w") as f:
        f.write(
            f"""apiVersion: kglue.dev/v1alpha1
kind: Database
metadata: {{name: tpch}}
spec: {{databaseName: tpch}}
---
apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {{name: tpch.lineitem}}
spec:
  databaseName: tpch
  tableName: lineitem
  storage: {{location: "file://{parquet_dir}/", format: Parquet, compression: Snappy}}
  columns:
{columns}
  partitionKeys:
    - {{name: ship_month, type: string}}
"""
        )


def run_duckdb(parquet_dir, query_file):
    with open(query_file) as f:
        query = f.read()
    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    con.execute(
        f"CREATE VIEW lineitem AS SELECT * FROM read_parquet('{parquet_dir}/**/*.parquet', hive_partitioning = true)"
    )
    result = con.sql(query)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.fetchall():
        writer.writerow(row)


def same(a, b):
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=1e-12, abs_tol=5e-6)


def compare(a_file, b_file):
    with open(a_file) as f:
        a = list(csv.reader(f))
    with open(b_file) as f:
        b = list(csv.reader(f))
    if len(a) != len(b) or len(a) < 2:
        sys.exit(f"{a_file} has {len(a)} lines, {b_file} {len(b)} (need the same, with rows)")
    for i, (ra, rb) in enumerate(zip(a[1:], b[1:]), start=1):
        if len(ra) != len(rb) or not all(same(x, y) for x, y in zip(ra, rb)):
            sys.exit(f"row {i} differs: {ra} vs {rb}")
    print(f"same {len(a) - 1} row(s)")


def line(measure_file):
    import json

    with open(measure_file) as f:
        run = json.load(f)
    print(f"{run['wall_s']} s wall, {run['cpu_s']} s CPU, {run['peak_rss_mib']} MiB")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    steps = {"parquet": parquet, "catalog": catalog, "duckdb": run_duckdb, "compare": compare, "line": line}
    steps[command](*args)
