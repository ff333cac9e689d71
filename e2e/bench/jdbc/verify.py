#!/usr/bin/env python3
"""What the PostgreSQL benchmark's table holds, and checks of what each engine wrote.

    verify.py ddl table|key                        the CREATE TABLE of public.lineitem, or the
                                                   ALTER TABLE adding its primary key
    verify.py expected CSV_EXPECTED_JSON OUT_JSON  the loaded table's figures (psql), checked
                                                   against the CSV's (tpch/verify.py expected)
    verify.py source CSV_DIR EXPECTED_JSON OUT_DIR the write direction's input: the CSV as one
                                                   Snappy Parquet file with the table's types
    verify.py read EXPECTED_JSON OUTPUT_DIR        an engine's Parquet output (DuckDB)
    verify.py write EXPECTED_JSON                  an engine's public.lineitem_copy (psql)

psql connects with the PG* variables of the environment (`kglue-postgres env`). `read` compares
the row count, that no (l_orderkey, l_linenumber) appears twice, sum(l_orderkey) and
sum(l_extendedprice) (exactly), the set of ship_month folders and that each row lies in its own
month's folder, and the column types. `write` compares the row count and the same two sums.
Both print one JSON object with a list of failures (empty when the output is right) and exit 1 on
a mismatch.
"""

import json
import os
import subprocess
import sys

from bench import COLUMNS, COPY_TABLE, PRIMARY_KEY, TABLE, create_table_sql, primary_key_sql, tpch


def psql(sql):
    """The rows psql prints for sql, as lists of strings."""
    done = subprocess.run(
        ["psql", "-X", "-q", "-tA", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"verify.py: psql failed: {done.stderr.strip()}\n  {sql}")
    return [line.split("\t") for line in done.stdout.splitlines() if line]


def figures(table):
    """Row count and the two sums of a PostgreSQL table, as exact strings."""
    rows, orderkeys, prices = psql(f"SELECT count(*), sum(l_orderkey), sum(l_extendedprice) FROM public.{table}")[0]
    return {"rows": int(rows), "sum_orderkey": orderkeys, "sum_extendedprice": prices}


tpch_verify = tpch("verify")


def write_json(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


def expected(csv_expected_file, dest):
    with open(csv_expected_file) as f:
        csv = json.load(f)
    result = figures(TABLE)
    low, high = psql(f"SELECT min(l_orderkey), max(l_orderkey) FROM public.{TABLE}")[0]
    result |= {"min_orderkey": int(low), "max_orderkey": int(high)}
    result["months"] = [m for (m,) in psql(f"SELECT DISTINCT to_char(l_shipdate, 'YYYY-MM') AS m FROM public.{TABLE} ORDER BY m")]
    if (result["rows"], result["sum_orderkey"]) != (csv["rows"], csv["sum_orderkey"]):
        sys.exit(f"verify.py: the table holds {result['rows']} rows (sum of l_orderkey {result['sum_orderkey']}), "
                 f"the CSV {csv['rows']} ({csv['sum_orderkey']})")
    if result["months"] != csv["months"]:
        sys.exit("verify.py: the table's ship months are not the CSV's")
    write_json(dest, result)
    print(json.dumps({k: v for k, v in result.items() if k != "months"} | {"months": len(result["months"])}))


def source(csv_dir, expected_file, out):
    """One Parquet file with the table's types, made by DuckDB from the CSV, and checked."""
    with open(expected_file) as f:
        want = json.load(f)
    os.makedirs(out)
    columns = ", ".join(f"'{name}': '{t}'" for name, _, t in COLUMNS)
    con = tpch_verify.connect()
    con.execute(
        f"""COPY (SELECT * FROM read_csv('{csv_dir}/*.csv', header = true, columns = {{{columns}}}))
            TO '{out}/lineitem.parquet' (FORMAT parquet, COMPRESSION snappy)"""
    )
    rows, orderkeys, prices = con.execute(
        f"SELECT count(*), sum(l_orderkey)::HUGEINT, sum(l_extendedprice) FROM read_parquet('{out}/*.parquet')"
    ).fetchone()
    got = {"rows": rows, "sum_orderkey": str(orderkeys), "sum_extendedprice": str(prices)}
    if got != {k: want[k] for k in got}:
        sys.exit(f"verify.py: the Parquet copy of the CSV holds {got}, the table {want}")
    print(json.dumps(got | {"bytes": os.path.getsize(f"{out}/lineitem.parquet")}))


def read(expected_file, out):
    with open(expected_file) as f:
        want = json.load(f)

    def check_rows(con, scan, failures):
        rows, keys, orderkeys, prices = con.execute(
            f"""SELECT count(*), count(DISTINCT ({', '.join(PRIMARY_KEY)})), sum(l_orderkey)::HUGEINT,
                       sum(l_extendedprice)
                FROM {scan}"""
        ).fetchone()
        if rows != want["rows"]:
            failures.append(f"rows: wrote {rows}, the table has {want['rows']}")
        if keys != rows:
            failures.append(f"{rows - keys} rows are there twice or more ({keys} distinct keys in {rows} rows)")
        if str(orderkeys) != want["sum_orderkey"]:
            failures.append(f"sum(l_orderkey): {orderkeys}, the table {want['sum_orderkey']}")
        if str(prices) != want["sum_extendedprice"]:
            failures.append(f"sum(l_extendedprice): {prices}, the table {want['sum_extendedprice']}")
        return rows

    result = tpch_verify.check_partitioned(out, want, {name: t for name, _, t in COLUMNS}, check_rows)
    print(json.dumps(result))
    return 1 if result["failures"] else 0


def write(expected_file):
    with open(expected_file) as f:
        want = json.load(f)
    failures = []
    exists = psql(f"SELECT to_regclass('public.{COPY_TABLE}') IS NOT NULL")[0][0] == "t"
    result = {"rows": 0}
    if not exists:
        failures.append(f"there is no table public.{COPY_TABLE}")
    else:
        got = figures(COPY_TABLE)
        result["rows"] = got["rows"]
        for key, words in (("rows", "rows"), ("sum_orderkey", "sum(l_orderkey)"), ("sum_extendedprice", "sum(l_extendedprice)")):
            if str(got[key]) != str(want[key]):
                failures.append(f"{words}: {got[key]} in {COPY_TABLE}, {want[key]} in {TABLE}")
        result["table_bytes"] = int(psql(f"SELECT pg_total_relation_size('public.{COPY_TABLE}')")[0][0])
        # The types the engine created the table with (information, not checked).
        result["types"] = ", ".join(
            f"{name} {typ}"
            for name, typ in psql(
                f"""SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
                    WHERE attrelid = 'public.{COPY_TABLE}'::regclass AND attnum > 0 AND NOT attisdropped
                    ORDER BY attnum"""
            )
        )
    # kglue loads a staging table first and drops it when the run commits.
    staging = [name for (name,) in psql("SELECT relname FROM pg_class WHERE relname LIKE 'kglue\\_stage\\_%'")]
    if staging:
        failures.append(f"staging tables left behind: {', '.join(staging)}")
    result["failures"] = failures
    print(json.dumps(result))
    return 1 if failures else 0


def main():
    args = sys.argv[1:]
    if args == ["ddl", "table"]:
        print(create_table_sql(), end="")
        return 0
    if args == ["ddl", "key"]:
        print(primary_key_sql(), end="")
        return 0
    if len(args) == 3 and args[0] == "expected":
        expected(args[1], args[2])
        return 0
    if len(args) == 4 and args[0] == "source":
        source(os.path.abspath(args[1]), args[2], os.path.abspath(args[3]))
        return 0
    if len(args) == 3 and args[0] == "read":
        return read(args[1], os.path.abspath(args[2]))
    if len(args) == 2 and args[0] == "write":
        return write(args[1])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
