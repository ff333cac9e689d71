#!/usr/bin/env python3
"""The benchmark's ETL jobs in DuckDB, Polars and PySpark, with identical semantics.

    engines.py duckdb|polars|pyspark transcode LINEITEM_DIR OUTPUT_DIR
    engines.py duckdb|polars|pyspark curate LINEITEM_DIR ORDERS_DIR OUTPUT_DIR
    engines.py duckdb|polars|pyspark flatten ORDERS_JSON_DIR OUTPUT_DIR

Every job reads every `*.csv` (or `*.jsonl`) file of its input folders with the declared column
types below (nothing is inferred), writes Snappy Parquet under OUTPUT_DIR, which must not exist,
and uses two threads; no sorting.

transcode  TPC-H lineitem CSV (header line); adds `ship_month` = l_shipdate as `YYYY-MM` and writes
           every row partitioned by ship_month in Hive folders (`ship_month=1995-03/`).
curate     lineitem CSV and versioned orders CSV (the TPC-H orders columns plus o_updated_at; a key
           may have several versions, in any file). Keeps the latest version of each order
           (row_number() over o_orderkey by o_updated_at descending = 1), joins it to lineitem and
           writes two outputs from that `detail`:
             OUTPUT_DIR/detail/   lineitem's columns, o_custkey, o_orderstatus, o_totalprice,
                                  o_orderdate, o_orderpriority, revenue = l_extendedprice *
                                  (1 - l_discount), partitioned by ship_month
             OUTPUT_DIR/summary/  ship_month, o_orderpriority, sum(revenue) AS revenue, count(*)
                                  AS lines, not partitioned
flatten    orders as JSON lines, one object per order with its line items nested (`items`, a list
           of structs); writes one row per item: l_orderkey (= o_orderkey), the item's fields, the
           order's fields but o_comment, and ship_month; partitioned by ship_month.

kglue runs the same jobs from kglue-job.yaml (transcode), kglue-curate.yaml and kglue-flatten.yaml,
whose catalog/*.yaml Tables declare the same columns.
"""

import os
import shutil
import sys

# The lineitem columns and their types, one list for every engine (Glue/Hive type names; the
# Table manifest in catalog/lineitem.yaml says the same). Money and quantities are doubles.
COLUMNS = [
    ("l_orderkey", "bigint"),
    ("l_partkey", "bigint"),
    ("l_suppkey", "bigint"),
    ("l_linenumber", "int"),
    ("l_quantity", "double"),
    ("l_extendedprice", "double"),
    ("l_discount", "double"),
    ("l_tax", "double"),
    ("l_returnflag", "string"),
    ("l_linestatus", "string"),
    ("l_shipdate", "date"),
    ("l_commitdate", "date"),
    ("l_receiptdate", "date"),
    ("l_shipinstruct", "string"),
    ("l_shipmode", "string"),
    ("l_comment", "string"),
]
# The TPC-H orders columns (as in catalog/orders.yaml and catalog/orders-json.yaml).
ORDER_COLUMNS = [
    ("o_orderkey", "bigint"),
    ("o_custkey", "bigint"),
    ("o_orderstatus", "string"),
    ("o_totalprice", "double"),
    ("o_orderdate", "date"),
    ("o_orderpriority", "string"),
    ("o_clerk", "string"),
    ("o_shippriority", "int"),
    ("o_comment", "string"),
]
# The versioned orders CSV of curate: the order's columns and when that version was written.
VERSIONED_ORDER_COLUMNS = ORDER_COLUMNS + [("o_updated_at", "timestamp")]
# A line item nested in an order of the JSON lines of flatten: lineitem's columns but the key.
ITEM_COLUMNS = COLUMNS[1:]
# The order columns that curate adds to each line of its detail output, and flatten to each item.
CURATE_ORDER_COLUMNS = ["o_custkey", "o_orderstatus", "o_totalprice", "o_orderdate", "o_orderpriority"]
FLATTEN_ORDER_COLUMNS = [name for name, _ in ORDER_COLUMNS[1:] if name != "o_comment"]

WORKLOADS = {"transcode": 1, "curate": 2, "flatten": 1}  # name -> number of input folders
THREADS = 2

DUCKDB_TYPES = {
    "bigint": "BIGINT",
    "int": "INTEGER",
    "double": "DOUBLE",
    "string": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


def duckdb_columns(columns):
    """A read_csv/read_json `columns` argument: {'name': 'TYPE', …}."""
    return "{" + ", ".join(f"'{name}': '{DUCKDB_TYPES[t]}'" for name, t in columns) + "}"


def duckdb_orders_json(src):
    """The orders JSON lines of flatten, read with their declared (nested) types."""
    items = ", ".join(f"{name} {DUCKDB_TYPES[t]}" for name, t in ITEM_COLUMNS)
    columns = duckdb_columns(ORDER_COLUMNS)[:-1] + f", 'items': 'STRUCT({items})[]'}}"
    return (
        f"read_json('{src}/*.jsonl', format = 'newline_delimited', columns = {columns}, "
        "dateformat = '%Y-%m-%d')"
    )


def run_duckdb(workload, inputs, out):
    import duckdb

    con = duckdb.connect(config={"threads": THREADS})
    if workload == "transcode":
        (src,) = inputs
        con.execute(
            f"""
            COPY (
                SELECT *, strftime(l_shipdate, '%Y-%m') AS ship_month
                FROM read_csv('{src}/*.csv', header = true, delim = ',', quote = '"',
                              columns = {duckdb_columns(COLUMNS)}, dateformat = '%Y-%m-%d')
            ) TO '{out}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (ship_month))
            """
        )
    elif workload == "curate":
        lineitem, orders = inputs
        # detail feeds both outputs: a TEMP table computes the dedup and join once (1.7 s against
        # 2.0 s at SF0.1 for two COPYs from a view, each joining again). It is held in memory up
        # to DuckDB's default limit (80% of RAM); beyond it DuckDB spills to temp_directory, which
        # would be .tmp/ in the current directory for an in-memory database: beside OUTPUT_DIR
        # instead.
        con.execute(f"SET temp_directory = '{out}.spill'")
        con.execute(
            f"""
            CREATE TEMP TABLE detail AS
            WITH latest AS (
                SELECT * FROM read_csv('{orders}/*.csv', header = true, delim = ',', quote = '"',
                                       columns = {duckdb_columns(VERSIONED_ORDER_COLUMNS)},
                                       dateformat = '%Y-%m-%d', timestampformat = '%Y-%m-%d %H:%M:%S')
                QUALIFY row_number() OVER (PARTITION BY o_orderkey ORDER BY o_updated_at DESC) = 1
            )
            SELECT l.*, {", ".join(f"o.{c}" for c in CURATE_ORDER_COLUMNS)},
                   l.l_extendedprice * (1 - l.l_discount) AS revenue,
                   strftime(l.l_shipdate, '%Y-%m') AS ship_month
            FROM read_csv('{lineitem}/*.csv', header = true, delim = ',', quote = '"',
                          columns = {duckdb_columns(COLUMNS)}, dateformat = '%Y-%m-%d') l
            JOIN latest o ON l.l_orderkey = o.o_orderkey
            """
        )
        os.makedirs(f"{out}/summary")  # and OUTPUT_DIR, which COPY … PARTITION_BY does not create
        con.execute(f"COPY detail TO '{out}/detail' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (ship_month))")
        con.execute(
            f"""
            COPY (
                SELECT ship_month, o_orderpriority, sum(revenue) AS revenue, count(*) AS lines
                FROM detail GROUP BY ship_month, o_orderpriority
            ) TO '{out}/summary/summary.parquet' (FORMAT parquet, COMPRESSION snappy)
            """
        )
    else:
        (src,) = inputs
        items = ", ".join(f"item.{name}" for name, _ in ITEM_COLUMNS)
        con.execute(
            f"""
            COPY (
                SELECT o_orderkey AS l_orderkey, {items}, {", ".join(FLATTEN_ORDER_COLUMNS)},
                       strftime(item.l_shipdate, '%Y-%m') AS ship_month
                FROM (SELECT *, unnest(items) AS item FROM {duckdb_orders_json(src)})
            ) TO '{out}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (ship_month))
            """
        )
    con.close()
    shutil.rmtree(f"{out}.spill", ignore_errors=True)


def run_polars(workload, inputs, out):
    if os.environ.get("POLARS_MAX_THREADS") != str(THREADS):
        sys.exit(f"engines.py: set POLARS_MAX_THREADS={THREADS} before starting Python (Polars reads it once)")
    import polars as pl

    pl_types = {
        "bigint": pl.Int64,
        "int": pl.Int32,
        "double": pl.Float64,
        "string": pl.String,
        "date": pl.Date,
        "timestamp": pl.Datetime("us"),
    }

    def scan_csv(src, columns):
        schema = {name: pl_types[t] for name, t in columns}
        return pl.scan_csv(f"{src}/*.csv", has_header=True, separator=",", schema=schema)

    def by_month(path):
        return pl.PartitionBy(path, key="ship_month", include_key=False)

    ship_month = pl.col("l_shipdate").dt.strftime("%Y-%m").alias("ship_month")
    if workload == "transcode":
        (src,) = inputs
        frame = scan_csv(src, COLUMNS)
        frame = frame.with_columns(ship_month)
        frame.sink_parquet(by_month(out), compression="snappy", mkdir=True)
    elif workload == "curate":
        lineitem, orders = inputs
        # row_number() = 1 over o_orderkey by o_updated_at descending: the "ordinal" rank is the
        # row number within the window. It says what the SQL says, and was as fast as the
        # alternatives at SF0.1 (sort + unique(keep="first"): 5% slower; group_by + sort_by +
        # last: within noise).
        latest = scan_csv(orders, VERSIONED_ORDER_COLUMNS).filter(
            pl.col("o_updated_at").rank("ordinal", descending=True).over("o_orderkey") == 1
        )
        detail = scan_csv(lineitem, COLUMNS).join(
            latest.select("o_orderkey", *CURATE_ORDER_COLUMNS), left_on="l_orderkey", right_on="o_orderkey", how="inner"
        )
        detail = detail.with_columns(
            (pl.col("l_extendedprice") * (1 - pl.col("l_discount"))).alias("revenue"), ship_month
        )
        summary = detail.group_by("ship_month", "o_orderpriority").agg(
            pl.col("revenue").sum().alias("revenue"),
            # pl.len() is an unsigned 32-bit count; every other engine writes count(*) as bigint.
            pl.len().cast(pl.Int64).alias("lines"),
        )
        # Both sinks in one collect_all: Polars finds the common subplan (the dedup and join) and
        # runs it once, feeding both (the plan shows one CACHE under SINK_MULTIPLE).
        pl.collect_all(
            [
                detail.sink_parquet(by_month(f"{out}/detail"), compression="snappy", mkdir=True, lazy=True),
                summary.sink_parquet(f"{out}/summary/summary.parquet", compression="snappy", mkdir=True, lazy=True),
            ]
        )
    else:
        (src,) = inputs
        item = pl.Struct({name: pl_types[t] for name, t in ITEM_COLUMNS})
        schema = {name: pl_types[t] for name, t in ORDER_COLUMNS} | {"items": pl.List(item)}
        frame = pl.scan_ndjson(f"{src}/*.jsonl", schema=schema)
        frame = frame.explode("items").unnest("items").select(
            pl.col("o_orderkey").alias("l_orderkey"),
            *(name for name, _ in ITEM_COLUMNS),
            *FLATTEN_ORDER_COLUMNS,
            ship_month,
        )
        # Two changes from the defaults, or the run grows with the input until SF5 no longer fits
        # in the machine (measured with SF0.1's file four times, ~1 GB: 6.9 GB of anonymous
        # memory): (1) The NDJSON reader's strings are views into large buffers of the batch it
        # parsed, which the per-month buffers of the partitioned sink keep alive; copying the
        # strings (concat_str with "") lets the parsed batches go: 1.5 GB. (2) Each month's writer
        # buffers a whole row group before it writes (SF1 has ~71,000 rows a month, so all of it
        # waits for the end); row groups of 16,384 rows make it write as it goes. At SF1: 111 s and
        # 3.6 GB peak RSS (~2.3 GB of it the JSON file the reader maps) against 126 s and 5.9 GB
        # with neither change; output 4% larger.
        strings = [name for name, t in ITEM_COLUMNS + ORDER_COLUMNS if t == "string" and name != "o_comment"]
        frame = frame.with_columns(pl.concat_str(pl.col(name), pl.lit("")).alias(name) for name in strings)
        frame.sink_parquet(by_month(out), compression="snappy", mkdir=True, row_group_size=16_384)


def run_pyspark(workload, inputs, out):
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spark_types = {
        "bigint": T.LongType(),
        "int": T.IntegerType(),
        "double": T.DoubleType(),
        "string": T.StringType(),
        "date": T.DateType(),
        # Without a time zone, as Glue's (Hive's) timestamp: nothing depends on the session's.
        "timestamp": T.TimestampNTZType(),
    }

    def struct(columns):
        return T.StructType([T.StructField(name, spark_types[t], True) for name, t in columns])

    spark = (
        SparkSession.builder.master(f"local[{THREADS}]")
        .appName(f"tpch-{workload}")
        .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "8g"))
        .config("spark.sql.parquet.compression.codec", "snappy")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")

    def read_csv(src, columns):
        return (
            spark.read.option("header", "true")
            .option("mode", "FAILFAST")
            .option("dateFormat", "yyyy-MM-dd")
            .option("timestampNTZFormat", "yyyy-MM-dd HH:mm:ss")
            .option("pathGlobFilter", "*.csv")
            .csv(src, schema=struct(columns))
        )

    ship_month = F.date_format("l_shipdate", "yyyy-MM").alias("ship_month")
    if workload == "transcode":
        (src,) = inputs
        frame = (
            spark.read.option("header", "true")
            .option("mode", "FAILFAST")
            .option("dateFormat", "yyyy-MM-dd")
            .option("pathGlobFilter", "*.csv")
            .csv(src, schema=struct(COLUMNS))
        )
        frame = frame.withColumn("ship_month", F.date_format("l_shipdate", "yyyy-MM"))
        frame.write.option("compression", "snappy").partitionBy("ship_month").parquet(out)
    elif workload == "curate":
        lineitem, orders = inputs
        newest_first = Window.partitionBy("o_orderkey").orderBy(F.col("o_updated_at").desc())
        latest = (
            read_csv(orders, VERSIONED_ORDER_COLUMNS)
            .withColumn("version", F.row_number().over(newest_first))
            .where(F.col("version") == 1)
            .select("o_orderkey", *CURATE_ORDER_COLUMNS)
        )
        items = read_csv(lineitem, COLUMNS)
        detail = items.join(latest, items.l_orderkey == latest.o_orderkey, "inner").select(
            *(items[name] for name, _ in COLUMNS),
            *CURATE_ORDER_COLUMNS,
            (F.col("l_extendedprice") * (1 - F.col("l_discount"))).alias("revenue"),
            ship_month,
        )
        # Not cached: detail is computed twice, once per write (the CSV is in the page cache, and
        # the summary's plan reads only the columns it needs). With detail.cache() the run took
        # 250-295 s at SF0.1 against 31-48 s (presumably the cached plan keeps the join's 200
        # shuffle partitions, which AQE does not coalesce for a cached plan); with
        # spark.sql.optimizer.canChangeCachedPlanOutputPartitioning too it was on par (49 s
        # against 46 s), so not worth the memory.
        detail.write.option("compression", "snappy").partitionBy("ship_month").parquet(f"{out}/detail")
        summary = detail.groupBy("ship_month", "o_orderpriority").agg(
            F.sum("revenue").alias("revenue"), F.count(F.lit(1)).alias("lines")
        )
        summary.write.option("compression", "snappy").parquet(f"{out}/summary")
    else:
        (src,) = inputs
        schema = struct(ORDER_COLUMNS).add("items", T.ArrayType(struct(ITEM_COLUMNS), True), True)
        orders = (
            spark.read.option("mode", "FAILFAST")
            .option("dateFormat", "yyyy-MM-dd")
            .option("pathGlobFilter", "*.jsonl")
            .json(src, schema=schema)
        )
        items = orders.select("*", F.explode("items").alias("item"))
        frame = items.select(
            F.col("o_orderkey").alias("l_orderkey"),
            *(F.col(f"item.{name}").alias(name) for name, _ in ITEM_COLUMNS),
            *FLATTEN_ORDER_COLUMNS,
            F.date_format("item.l_shipdate", "yyyy-MM").alias("ship_month"),
        )
        frame.write.option("compression", "snappy").partitionBy("ship_month").parquet(out)
    spark.stop()


def main():
    args = sys.argv[1:]
    if (
        len(args) < 3
        or args[0] not in ("duckdb", "polars", "pyspark")
        or args[1] not in WORKLOADS
        or len(args) != 3 + WORKLOADS[args[1]]
    ):
        sys.exit(__doc__)
    engine, workload = args[:2]
    *inputs, out = (os.path.abspath(path) for path in args[2:])
    if os.path.exists(out):
        sys.exit(f"engines.py: {out} exists; the output folder must be new")
    {"duckdb": run_duckdb, "polars": run_polars, "pyspark": run_pyspark}[engine](workload, inputs, out)


if __name__ == "__main__":
    main()
