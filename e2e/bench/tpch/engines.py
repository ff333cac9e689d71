#!/usr/bin/env python3
"""The benchmark's ETL job in DuckDB, Polars and PySpark, with identical semantics.

    engines.py duckdb|polars|pyspark INPUT_DIR OUTPUT_DIR

Reads every `*.csv` file of INPUT_DIR (TPC-H lineitem with a header line) with the declared column
types below, adds `ship_month` = l_shipdate as `YYYY-MM`, and writes Snappy Parquet partitioned by
ship_month in Hive folders (`ship_month=1995-03/`) under OUTPUT_DIR, which must not exist. Two
threads for every engine; no sorting. kglue runs the same job from kglue-job.yaml and
catalog/lineitem.yaml, which declare the same columns.
"""

import os
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
THREADS = 2


def run_duckdb(src, out):
    import duckdb

    sql_types = {"bigint": "BIGINT", "int": "INTEGER", "double": "DOUBLE", "string": "VARCHAR", "date": "DATE"}
    columns = ", ".join(f"'{name}': '{sql_types[t]}'" for name, t in COLUMNS)
    con = duckdb.connect(config={"threads": THREADS})
    con.execute(
        f"""
        COPY (
            SELECT *, strftime(l_shipdate, '%Y-%m') AS ship_month
            FROM read_csv('{src}/*.csv', header = true, delim = ',', quote = '"',
                          columns = {{{columns}}}, dateformat = '%Y-%m-%d')
        ) TO '{out}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (ship_month))
        """
    )
    con.close()


def run_polars(src, out):
    if os.environ.get("POLARS_MAX_THREADS") != str(THREADS):
        sys.exit(f"engines.py: set POLARS_MAX_THREADS={THREADS} before starting Python (Polars reads it once)")
    import polars as pl

    pl_types = {"bigint": pl.Int64, "int": pl.Int32, "double": pl.Float64, "string": pl.String, "date": pl.Date}
    schema = {name: pl_types[t] for name, t in COLUMNS}
    frame = pl.scan_csv(f"{src}/*.csv", has_header=True, separator=",", schema=schema)
    frame = frame.with_columns(pl.col("l_shipdate").dt.strftime("%Y-%m").alias("ship_month"))
    frame.sink_parquet(
        pl.PartitionBy(out, key="ship_month", include_key=False),
        compression="snappy",
        mkdir=True,
    )


def run_pyspark(src, out):
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spark_types = {
        "bigint": T.LongType(),
        "int": T.IntegerType(),
        "double": T.DoubleType(),
        "string": T.StringType(),
        "date": T.DateType(),
    }
    schema = T.StructType([T.StructField(name, spark_types[t], True) for name, t in COLUMNS])
    spark = (
        SparkSession.builder.master(f"local[{THREADS}]")
        .appName("tpch-lineitem-by-month")
        .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "8g"))
        .config("spark.sql.parquet.compression.codec", "snappy")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    frame = (
        spark.read.option("header", "true")
        .option("mode", "FAILFAST")
        .option("dateFormat", "yyyy-MM-dd")
        .option("pathGlobFilter", "*.csv")
        .csv(src, schema=schema)
    )
    frame = frame.withColumn("ship_month", F.date_format("l_shipdate", "yyyy-MM"))
    frame.write.option("compression", "snappy").partitionBy("ship_month").parquet(out)
    spark.stop()


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("duckdb", "polars", "pyspark"):
        sys.exit(__doc__)
    engine, src, out = sys.argv[1:]
    src, out = os.path.abspath(src), os.path.abspath(out)
    if os.path.exists(out):
        sys.exit(f"engines.py: {out} exists; the output folder must be new")
    {"duckdb": run_duckdb, "polars": run_polars, "pyspark": run_pyspark}[engine](src, out)


if __name__ == "__main__":
    main()
