#!/usr/bin/env python3
"""Check an engine's output against its input, with DuckDB.

    verify.py expected INPUT_DIR EXPECTED_JSON     what the input holds (once per scale factor)
    verify.py check EXPECTED_JSON OUTPUT_DIR       what an engine wrote; exit 1 on a mismatch

`check` reads the output as Hive-partitioned Parquet (`ship_month=…/*.parquet`) and compares:
the row count, the set of ship_month partitions (from the folder names, and the months of the
dates inside each folder), sums of two columns (nothing lost or altered), and the column types
(the same logical types for every engine). It prints one JSON object: rows, partitions, files,
output bytes and the list of failures (empty when the output is right).
"""

import json
import os
import sys

import duckdb

# DuckDB's reading of the Parquet types every engine must write (see COLUMNS in engines.py).
EXPECTED_TYPES = {
    "l_orderkey": "BIGINT",
    "l_partkey": "BIGINT",
    "l_suppkey": "BIGINT",
    "l_linenumber": "INTEGER",
    "l_quantity": "DOUBLE",
    "l_extendedprice": "DOUBLE",
    "l_discount": "DOUBLE",
    "l_tax": "DOUBLE",
    "l_returnflag": "VARCHAR",
    "l_linestatus": "VARCHAR",
    "l_shipdate": "DATE",
    "l_commitdate": "DATE",
    "l_receiptdate": "DATE",
    "l_shipinstruct": "VARCHAR",
    "l_shipmode": "VARCHAR",
    "l_comment": "VARCHAR",
}


def connect():
    return duckdb.connect(config={"threads": 2})


def expected(src, dest):
    con = connect()
    rows, orderkeys, quantity = con.execute(
        f"""SELECT count(*), sum(l_orderkey)::HUGEINT, round(sum(l_quantity), 2)
            FROM read_csv('{src}/*.csv', header = true)"""
    ).fetchone()
    months = [
        m
        for (m,) in con.execute(
            f"""SELECT DISTINCT strftime(l_shipdate::DATE, '%Y-%m') AS m
                FROM read_csv('{src}/*.csv', header = true) ORDER BY m"""
        ).fetchall()
    ]
    result = {"rows": rows, "sum_orderkey": str(orderkeys), "sum_quantity": float(quantity), "months": months}
    tmp = dest + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, dest)
    print(json.dumps({k: v for k, v in result.items() if k != "months"} | {"partitions": len(months)}))


def check_partitioned(out, want, expected_types, check_rows):
    """The checks of any output partitioned by ship_month: Parquet files only in
    `ship_month=YYYY-MM/` folders, those of want["months"], each row in its own month's folder, and
    the column types of expected_types (column -> DuckDB type). check_rows(con, scan, failures)
    compares the rows themselves (`scan` reads the output) and returns how many there are.
    Returns rows, partitions, files, output_bytes and failures."""
    failures = []
    files = 0
    size = 0
    folders = set()
    for root, _, names in os.walk(out):
        for name in names:
            if name.endswith(".parquet"):
                files += 1
                size += os.path.getsize(os.path.join(root, name))
                rel = os.path.relpath(root, out)
                folders.add(rel)
    months = set()
    for rel in folders:
        if not rel.startswith("ship_month=") or "/" in rel:
            failures.append(f"Parquet file outside a ship_month=YYYY-MM/ folder: {rel}/")
        else:
            months.add(rel.split("=", 1)[1])
    result = {"rows": 0, "partitions": len(months), "files": files, "output_bytes": size}
    if files == 0:
        failures.append(f"no Parquet files under {out}")
    else:
        con = connect()
        scan = f"read_parquet('{out}/**/*.parquet', hive_partitioning = true, hive_types = {{'ship_month': 'VARCHAR'}})"
        result["rows"] = check_rows(con, scan, failures)
        (misplaced,) = con.execute(
            f"SELECT count(*) FROM {scan} WHERE strftime(l_shipdate, '%Y-%m') <> ship_month"
        ).fetchone()
        if misplaced:
            failures.append(f"{misplaced} rows sit in a ship_month folder that is not their l_shipdate's month")
        types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        for name, typ in expected_types.items():
            if types.get(name) != typ:
                failures.append(f"column {name}: {types.get(name, 'missing')}, expected {typ}")
        extra = sorted(set(types) - set(expected_types) - {"ship_month"})
        if extra:
            failures.append(f"unexpected columns: {', '.join(extra)}")
    if sorted(months) != want["months"]:
        missing = sorted(set(want["months"]) - months)
        unexpected = sorted(months - set(want["months"]))
        failures.append(f"partitions: {len(months)} written, {len(want['months'])} expected; missing {missing[:5]}, unexpected {unexpected[:5]}")
    result["failures"] = failures
    return result


def check(expected_file, out):
    with open(expected_file) as f:
        want = json.load(f)

    def check_rows(con, scan, failures):
        rows, orderkeys, quantity = con.execute(
            f"SELECT count(*), sum(l_orderkey)::HUGEINT, round(sum(l_quantity), 2) FROM {scan}"
        ).fetchone()
        if rows != want["rows"]:
            failures.append(f"rows: wrote {rows}, input has {want['rows']}")
        if str(orderkeys) != want["sum_orderkey"]:
            failures.append(f"sum(l_orderkey): {orderkeys}, input {want['sum_orderkey']}")
        if abs(float(quantity) - want["sum_quantity"]) > 1e-6 * abs(want["sum_quantity"]):
            failures.append(f"sum(l_quantity): {quantity}, input {want['sum_quantity']}")
        return rows

    result = check_partitioned(out, want, EXPECTED_TYPES, check_rows)
    print(json.dumps(result))
    return 1 if result["failures"] else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "expected":
        expected(os.path.abspath(sys.argv[2]), sys.argv[3])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        return check(sys.argv[2], os.path.abspath(sys.argv[3]))
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
