#!/usr/bin/env python3
"""Make the inputs of the curate and flatten workloads, and check an engine's output, with DuckDB.

    verify.py expected INPUT_DIR EXPECTED_JSON      what the lineitem CSV holds (once per scale
                                                    factor; the transcode's expected figures)
    verify.py orders TPCH_ORDERS_DIR LINEITEM_DIR DEST_DIR EXPECTED_JSON
                                                    curate's input, versioned orders CSV, into
                                                    DEST_DIR; and what curate must write
    verify.py orders-json TPCH_ORDERS_DIR LINEITEM_DIR DEST_DIR EXPECTED_JSON
                                                    flatten's input, orders with their items nested,
                                                    as JSON lines into DEST_DIR; and what flatten
                                                    must write
    verify.py check transcode|curate|flatten EXPECTED_JSON OUTPUT_DIR
                                                    what an engine wrote; exit 1 on a mismatch

TPCH_ORDERS_DIR holds tpchgen-cli's orders CSV and LINEITEM_DIR the lineitem CSV; DEST_DIR must
not exist. `check` reads the output as Hive-partitioned Parquet (`ship_month=…/*.parquet`) and
compares: the row count, the set of ship_month partitions (from the folder names, and the months
of the dates inside each folder), sums of a few columns (nothing lost, duplicated or altered; for
curate, that the latest version of each order was joined), and the column types (the same logical
types for every engine); for curate also its summary, group by group. It prints one JSON object:
rows, partitions, files, output bytes and the list of failures (empty when the output is right).
"""

import json
import math
import os
import re
import shutil
import sys

import duckdb

# The declared input types (one list for the whole harness).
from engines import COLUMNS, ITEM_COLUMNS, ORDER_COLUMNS, VERSIONED_ORDER_COLUMNS, duckdb_columns, duckdb_orders_json

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
# curate's detail: every lineitem column and the columns of the latest version of the order.
CURATE_TYPES = EXPECTED_TYPES | {
    "o_custkey": "BIGINT",
    "o_orderstatus": "VARCHAR",
    "o_totalprice": "DOUBLE",
    "o_orderdate": "DATE",
    "o_orderpriority": "VARCHAR",
    "revenue": "DOUBLE",
}
# curate's summary (count(*) is a bigint in SQL; Polars casts its unsigned count).
SUMMARY_TYPES = {"ship_month": "VARCHAR", "o_orderpriority": "VARCHAR", "revenue": "DOUBLE", "lines": "BIGINT"}
# flatten's rows: the item as a lineitem row, and the order's columns but o_comment.
FLATTEN_TYPES = EXPECTED_TYPES | {
    "o_custkey": "BIGINT",
    "o_orderstatus": "VARCHAR",
    "o_totalprice": "DOUBLE",
    "o_orderdate": "DATE",
    "o_orderpriority": "VARCHAR",
    "o_clerk": "VARCHAR",
    "o_shippriority": "INTEGER",
}

# Making the inputs: DuckDB may use this much memory and spills the rest to a folder beside
# DEST_DIR (the machine has 24 GiB; SF5's JSON lines are ~11 GB).
GENERATE_MEMORY = "6GB"
# orders-json is written in slices of about this many line items (by o_orderkey range), so that
# nesting the items (list() per order) never holds a whole scale factor in memory.
ITEMS_PER_SLICE = 4_000_000
# (DuckDB quotes only what needs it: not a comment's leading or trailing space, which every reader
# here keeps all the same. FORCE_QUOTE would quote the header's name too.)
CSV_OPTIONS = "HEADER, DELIMITER ',', QUOTE '\"', DATEFORMAT '%Y-%m-%d', TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S'"


def connect():
    return duckdb.connect(config={"threads": 2})


def connect_generator(dest, database=":memory:"):
    """DuckDB for making an input into DEST_DIR: bounded memory, spilling beside DEST_DIR."""
    spill = dest + ".spill"
    os.makedirs(spill, exist_ok=True)
    return duckdb.connect(
        database, config={"threads": 2, "memory_limit": GENERATE_MEMORY, "temp_directory": spill}
    )


def lineitem_csv(src):
    return (
        f"read_csv('{src}/*.csv', header = true, delim = ',', quote = '\"', columns = {duckdb_columns(COLUMNS)}, "
        "dateformat = '%Y-%m-%d')"
    )


def tpch_orders_csv(src):
    return (
        f"read_csv('{src}/*.csv', header = true, delim = ',', quote = '\"', "
        f"columns = {duckdb_columns(ORDER_COLUMNS)}, dateformat = '%Y-%m-%d')"
    )


def write_json(result, dest):
    tmp = dest + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, dest)


def make_orders(raw, lineitem, dest, expected_file):
    """curate's input: orders.1.csv has every order once, updated at 08:00 of its order date;
    orders.2.csv a later version of every order with o_orderkey % 8 = 0 (status F, price +10%, 30
    days later) and an OLDER one of every order with o_orderkey % 16 = 1 (price 0, priority 5-LOW,
    the day before), in hashed key order. So the latest version is neither simply the last file's
    nor the last row's, and joining a wrong one changes the sums."""
    os.makedirs(dest)
    con = connect_generator(dest)
    con.execute(f"CREATE TEMP VIEW tpch_orders AS SELECT * FROM {tpch_orders_csv(raw)}")
    con.execute(
        f"""COPY (SELECT *, o_orderdate + TIME '08:00:00' AS o_updated_at FROM tpch_orders)
            TO '{dest}/orders.1.csv' ({CSV_OPTIONS})"""
    )
    con.execute(
        f"""
        COPY (
            SELECT * FROM (
                SELECT o_orderkey, o_custkey, 'F' AS o_orderstatus, round(o_totalprice * 1.1, 2) AS o_totalprice,
                       o_orderdate, o_orderpriority, o_clerk, o_shippriority, o_comment,
                       (o_orderdate + 30) + TIME '08:00:00' AS o_updated_at
                FROM tpch_orders WHERE o_orderkey % 8 = 0
                UNION ALL
                SELECT o_orderkey, o_custkey, o_orderstatus, 0::DOUBLE AS o_totalprice,
                       o_orderdate, '5-LOW' AS o_orderpriority, o_clerk, o_shippriority, o_comment,
                       (o_orderdate - 1) + TIME '08:00:00' AS o_updated_at
                FROM tpch_orders WHERE o_orderkey % 16 = 1
            ) ORDER BY hash(o_orderkey)
        ) TO '{dest}/orders.2.csv' ({CSV_OPTIONS})
        """
    )
    # What curate must write, from the files just written, read as every engine reads them, by the
    # workload's own SQL (see engines.py).
    con.execute(
        f"""
        CREATE TEMP TABLE latest AS
        SELECT * FROM (
            SELECT *, row_number() OVER (PARTITION BY o_orderkey ORDER BY o_updated_at DESC) AS version
            FROM read_csv('{dest}/*.csv', header = true, delim = ',', quote = '"',
                          columns = {duckdb_columns(VERSIONED_ORDER_COLUMNS)},
                          dateformat = '%Y-%m-%d', timestampformat = '%Y-%m-%d %H:%M:%S'))
        WHERE version = 1
        """
    )
    (orders,) = con.execute("SELECT count(*) FROM tpch_orders").fetchone()
    (versions,) = con.execute(f"SELECT count(*) FROM read_csv('{dest}/*.csv', header = true)").fetchone()
    (latest,) = con.execute("SELECT count(*) FROM latest").fetchone()
    (wrong,) = con.execute(
        """SELECT count(*) FROM latest
           WHERE o_updated_at <> CASE WHEN o_orderkey % 8 = 0 THEN (o_orderdate + 30) + TIME '08:00:00'
                                      ELSE o_orderdate + TIME '08:00:00' END
              OR o_totalprice = 0"""
    ).fetchone()
    if latest != orders or wrong:
        sys.exit(f"verify.py: the versioned orders are wrong: {latest} latest of {orders} orders, {wrong} not the intended version")
    con.execute(
        f"""
        CREATE TEMP TABLE detail AS
        SELECT l.l_orderkey, l.l_quantity, o.o_totalprice, o.o_orderpriority,
               l.l_extendedprice * (1 - l.l_discount) AS revenue,
               strftime(l.l_shipdate, '%Y-%m') AS ship_month
        FROM {lineitem_csv(lineitem)} l JOIN latest o ON l.l_orderkey = o.o_orderkey
        """
    )
    rows, orderkeys, quantity, totalprice = con.execute(
        """SELECT count(*), sum(l_orderkey)::HUGEINT, round(sum(l_quantity), 2), round(sum(o_totalprice), 2)
           FROM detail"""
    ).fetchone()
    months = [m for (m,) in con.execute("SELECT DISTINCT ship_month FROM detail ORDER BY 1").fetchall()]
    summary = [
        [month, priority, revenue, lines]
        for month, priority, revenue, lines in con.execute(
            """SELECT ship_month, o_orderpriority, sum(revenue), count(*) FROM detail
               GROUP BY ship_month, o_orderpriority ORDER BY 1, 2"""
        ).fetchall()
    ]
    con.close()
    shutil.rmtree(dest + ".spill", ignore_errors=True)
    result = {
        "rows": rows,
        "sum_orderkey": str(orderkeys),
        "sum_quantity": float(quantity),
        "sum_totalprice": float(totalprice),
        "months": months,
        "orders": orders,
        "order_versions": versions,
        "summary": summary,
    }
    write_json(result, expected_file)
    print(json.dumps({k: v for k, v in result.items() if k not in ("months", "summary")} | {"partitions": len(months), "summary_groups": len(summary)}))


# The keys of an order object and of an item object, in the order they are written.
ORDER_KEYS = [name for name, _ in ORDER_COLUMNS] + ["items"]
ITEM_KEYS = [name for name, _ in ITEM_COLUMNS]


def check_first_line(path):
    """The first object of the JSON lines has the keys in order, numbers as JSON numbers (doubles
    with a decimal point) and dates as YYYY-MM-DD strings: what every reader is declared to read."""
    with open(path) as f:
        line = f.readline()
    order = json.loads(line, object_pairs_hook=lambda pairs: pairs)
    keys = [k for k, _ in order]
    if keys != ORDER_KEYS:
        sys.exit(f"verify.py: {path}: the first object's keys are {keys}, expected {ORDER_KEYS}")
    values = dict(order)
    items = values["items"]
    if not items or [k for k, _ in items[0]] != ITEM_KEYS:
        sys.exit(f"verify.py: {path}: the first item's keys are {[k for k, _ in items[0]] if items else None}, expected {ITEM_KEYS}")
    types = {"bigint": int, "int": int, "double": float, "string": str, "date": str}
    for columns, obj in ((ORDER_COLUMNS, values), (ITEM_COLUMNS, dict(items[0]))):
        for name, typ in columns:
            value = obj[name]
            if type(value) is not types[typ] or (typ == "date" and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)):
                sys.exit(f"verify.py: {path}: {name} is {value!r} in the first line, expected a JSON {typ}")
    return line


def make_orders_json(raw, lineitem, dest, expected_file):
    """flatten's input: one JSON object per TPC-H order (the orders columns, o_orderdate as
    "YYYY-MM-DD"), its line items nested as `items` in l_linenumber order, in one file."""
    os.makedirs(dest)
    database = dest + ".duckdb"
    con = connect_generator(dest, database)
    # Tables in a database file, loaded once: each slice below reads its key range of them (DuckDB
    # skips the other row groups by their min/max), and what does not fit in memory is on disk.
    con.execute(f"CREATE TABLE orders AS SELECT * FROM {tpch_orders_csv(raw)}")
    con.execute(f"CREATE TABLE lineitem AS SELECT * FROM {lineitem_csv(lineitem)}")
    (orders,) = con.execute("SELECT count(*) FROM orders").fetchone()
    items, max_key = con.execute("SELECT count(*), max(l_orderkey) FROM lineitem").fetchone()
    slices = max(1, math.ceil(items / ITEMS_PER_SLICE))
    step = math.ceil(max_key / slices)
    order_columns = ", ".join(name for name, _ in ORDER_COLUMNS)
    item_fields = ", ".join(f"{name} := {name}" for name, _ in ITEM_COLUMNS)
    parts = []
    for i in range(slices):
        lo, hi = i * step + 1, (i + 1) * step
        part = f"{dest}/part-{i:03d}.jsonl"
        # DuckDB writes DATE as "YYYY-MM-DD" and DOUBLE with a decimal point (17.0) in JSON.
        con.execute(
            f"""
            COPY (
                SELECT {order_columns}, items
                FROM orders JOIN (
                    SELECT l_orderkey, list(struct_pack({item_fields}) ORDER BY l_linenumber) AS items
                    FROM lineitem WHERE l_orderkey BETWEEN {lo} AND {hi}
                    GROUP BY l_orderkey
                ) ON l_orderkey = o_orderkey
                WHERE o_orderkey BETWEEN {lo} AND {hi}
                ORDER BY o_orderkey
            ) TO '{part}' (FORMAT json)
            """
        )
        parts.append(part)
    con.close()
    os.remove(database)
    # One file: the first slice becomes it, the others are appended (and deleted one by one, so
    # that the disk holds the JSON lines once, plus one slice).
    target = f"{dest}/orders.jsonl"
    os.rename(parts[0], target)
    with open(target, "ab") as f:
        for part in parts[1:]:
            with open(part, "rb") as p:
                shutil.copyfileobj(p, f, 16 << 20)
            os.remove(part)
    first = check_first_line(target)
    print(f"verify.py: {target}: {os.path.getsize(target) / 2**30:.2f} GiB; first line: {first[:300]}…", file=sys.stderr)
    # What flatten must write, from the file just written, read with the declared types.
    # One pass over the file (SF5's is ~11 GB), nothing materialised.
    con = connect_generator(dest)
    rows, orderkeys, quantity, totalprice, read_orders, months = con.execute(
        f"""SELECT count(*), sum(o_orderkey)::HUGEINT, round(sum(item.l_quantity), 2), round(sum(o_totalprice), 2),
                   count(DISTINCT o_orderkey), list(DISTINCT strftime(item.l_shipdate, '%Y-%m'))
            FROM (SELECT o_orderkey, o_totalprice, unnest(items) AS item FROM {duckdb_orders_json(dest)})"""
    ).fetchone()
    months = sorted(months)
    con.close()
    shutil.rmtree(dest + ".spill", ignore_errors=True)
    if rows != items or read_orders != orders:
        sys.exit(f"verify.py: {target} holds {read_orders} orders and {rows} items, expected {orders} and {items}")
    result = {
        "rows": rows,
        "sum_orderkey": str(orderkeys),
        "sum_quantity": float(quantity),
        "sum_totalprice": float(totalprice),
        "months": months,
        "orders": orders,
    }
    write_json(result, expected_file)
    print(json.dumps({k: v for k, v in result.items() if k != "months"} | {"partitions": len(months)}))


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
        try:
            types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        except duckdb.Error as e:
            types = None
            failures.append(f"the output cannot be read as one table: {str(e).splitlines()[0]}")
        if types is not None:
            for name, typ in expected_types.items():
                if types.get(name) != typ:
                    failures.append(f"column {name}: {types.get(name, 'missing')}, expected {typ}")
            extra = sorted(set(types) - set(expected_types) - {"ship_month"})
            if extra:
                failures.append(f"unexpected columns: {', '.join(extra[:5])}{', …' if len(extra) > 5 else ''}")
        # The rows are compared only when the columns they are compared by are there (a wrongly
        # named column is reported above, once).
        if types is not None and {"l_orderkey", "l_quantity", "l_shipdate"} <= set(types):
            try:
                result["rows"] = check_rows(con, scan, failures)
                (misplaced,) = con.execute(
                    f"SELECT count(*) FROM {scan} WHERE strftime(l_shipdate, '%Y-%m') <> ship_month"
                ).fetchone()
                if misplaced:
                    failures.append(f"{misplaced} rows sit in a ship_month folder that is not their l_shipdate's month")
            except duckdb.Error as e:
                failures.append(f"the rows cannot be compared: {str(e).splitlines()[0]}")
    if sorted(months) != want["months"]:
        missing = sorted(set(want["months"]) - months)
        unexpected = sorted(months - set(want["months"]))
        failures.append(f"partitions: {len(months)} written, {len(want['months'])} expected; missing {missing[:5]}, unexpected {unexpected[:5]}")
    result["failures"] = failures
    return result


def parquet_files(folder):
    """(count, bytes) of the .parquet files anywhere under folder."""
    files = size = 0
    for root, _, names in os.walk(folder):
        for name in names:
            if name.endswith(".parquet"):
                files += 1
                size += os.path.getsize(os.path.join(root, name))
    return files, size


def rows_checker(want, totalprice):
    """check_rows for check_partitioned: the row count, sum(l_orderkey), sum(l_quantity) and, with
    totalprice, sum(o_totalprice) against want's."""

    def check_rows(con, scan, failures):
        rows, orderkeys, quantity, price = con.execute(
            f"""SELECT count(*), sum(l_orderkey)::HUGEINT, round(sum(l_quantity), 2),
                       {"round(sum(o_totalprice), 2)" if totalprice else "0"}
                FROM {scan}"""
        ).fetchone()
        if rows != want["rows"]:
            failures.append(f"rows: wrote {rows}, input has {want['rows']}")
        if str(orderkeys) != want["sum_orderkey"]:
            failures.append(f"sum(l_orderkey): {orderkeys}, input {want['sum_orderkey']}")
        if abs(float(quantity) - want["sum_quantity"]) > 1e-6 * abs(want["sum_quantity"]):
            failures.append(f"sum(l_quantity): {quantity}, input {want['sum_quantity']}")
        if totalprice and abs(float(price or 0) - want["sum_totalprice"]) > 1e-6 * abs(want["sum_totalprice"]):
            failures.append(f"sum(o_totalprice): {price}, expected {want['sum_totalprice']}")
        return rows

    return check_rows


def check_summary(out, want, failures):
    """curate's summary: the expected (ship_month, o_orderpriority) groups, each once, with equal
    line counts and revenue within 1e-6 relative (engines sum doubles in different orders)."""
    con = connect()
    scan = f"read_parquet('{out}/*.parquet', hive_partitioning = false)"
    try:
        types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
    except duckdb.Error as e:
        failures.append(f"the summary cannot be read as one table: {str(e).splitlines()[0]}")
        return 0
    if types != SUMMARY_TYPES:
        failures.append(f"summary columns: {types}, expected {SUMMARY_TYPES}")
        if not set(SUMMARY_TYPES) <= set(types):
            return 0
    got = {}
    for month, priority, revenue, lines in con.execute(
        f"SELECT ship_month, o_orderpriority, revenue, lines FROM {scan}"
    ).fetchall():
        if (month, priority) in got:
            failures.append(f"summary: group ({month}, {priority}) written more than once")
        got[(month, priority)] = (revenue, lines)
    expected = {(month, priority): (revenue, lines) for month, priority, revenue, lines in want["summary"]}
    if set(got) != set(expected):
        missing = sorted(set(expected) - set(got))
        unexpected = sorted(set(got) - set(expected))
        failures.append(f"summary: {len(got)} groups, {len(expected)} expected; missing {missing[:3]}, unexpected {unexpected[:3]}")
    wrong = [
        key
        for key in sorted(set(got) & set(expected))
        if got[key][1] != expected[key][1]
        or got[key][0] is None
        or abs(got[key][0] - expected[key][0]) > 1e-6 * abs(expected[key][0])
    ]
    if wrong:
        key = wrong[0]
        failures.append(
            f"summary: {len(wrong)} groups with other revenue or lines, e.g. {key}: {got[key]}, expected {expected[key]}"
        )
    return len(got)


def check(workload, expected_file, out):
    with open(expected_file) as f:
        want = json.load(f)
    if workload == "transcode":
        result = check_partitioned(out, want, EXPECTED_TYPES, rows_checker(want, totalprice=False))
    elif workload == "flatten":
        result = check_partitioned(out, want, FLATTEN_TYPES, rows_checker(want, totalprice=True))
    else:
        # Two outputs: detail/ (partitioned) and summary/ (Parquet directly in it); nothing else.
        failures = []
        for root, _, names in os.walk(out):
            rel = os.path.relpath(root, out)
            if any(name.endswith(".parquet") for name in names) and rel != "summary" and not rel.startswith("detail/"):
                failures.append(f"Parquet files outside detail/ship_month=…/ and summary/: {rel}/")
        result = check_partitioned(os.path.join(out, "detail"), want, CURATE_TYPES, rows_checker(want, totalprice=True))
        files, size = parquet_files(os.path.join(out, "summary"))
        if files == 0:
            failures.append(f"no Parquet files in {out}/summary")
        else:
            result["summary_groups"] = check_summary(os.path.join(out, "summary"), want, failures)
        result["files"] += files
        result["output_bytes"] += size
        result["failures"] = failures + result["failures"]
    print(json.dumps(result))
    return 1 if result["failures"] else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "expected":
        expected(os.path.abspath(sys.argv[2]), sys.argv[3])
        return 0
    if len(sys.argv) == 6 and sys.argv[1] in ("orders", "orders-json"):
        raw, lineitem, dest = (os.path.abspath(path) for path in sys.argv[2:5])
        if os.path.exists(dest):
            sys.exit(f"verify.py: {dest} exists; the destination must be new")
        (make_orders if sys.argv[1] == "orders" else make_orders_json)(raw, lineitem, dest, sys.argv[5])
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "check" and sys.argv[2] in ("transcode", "curate", "flatten"):
        return check(sys.argv[2], sys.argv[3], os.path.abspath(sys.argv[4]))
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
