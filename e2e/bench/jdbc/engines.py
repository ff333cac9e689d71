#!/usr/bin/env python3
"""The PostgreSQL benchmark's jobs in ConnectorX (+ Polars) and PySpark, with kglue's semantics.

    engines.py connectorx-read SSLMODE OUTPUT_DIR
    engines.py pyspark-read SSLMODE LOWER UPPER OUTPUT_DIR
    engines.py pyspark-write SSLMODE INPUT_DIR

Read: every row of public.lineitem, in PARTITIONS parallel reads split on l_orderkey, plus
`ship_month` = l_shipdate as `YYYY-MM`, written as Snappy Parquet partitioned by ship_month in Hive
folders under OUTPUT_DIR, which must not exist. Write: the Parquet files of INPUT_DIR appended to
public.lineitem_copy, which the engine creates (run.sh drops it before every run).

The server, user, password and database come from PGHOST, PGPORT, PGUSER, PGPASSWORD and
PGDATABASE (`kglue-postgres env`), SSLMODE is libpq's (disable or require), PySpark's driver jar is
PG_JDBC_JAR; Polars' threads are POLARS_MAX_THREADS, which must be PARTITIONS. LOWER and UPPER are l_orderkey's bounds, which Spark needs to be told (kglue and
ConnectorX read them). kglue runs the same jobs from kglue-read-job.yaml and kglue-write-job.yaml.
"""

import os
import sys

from bench import COLUMNS, COPY_TABLE, MONTH, PARTITION_COLUMN, TABLE

PARTITIONS = 2  # parallel reads (and threads) for every engine
FETCH_SIZE = 10000  # rows per round trip where the engine has the setting (kglue, Spark)
BATCH_SIZE = 10000  # rows per INSERT batch of Spark's JDBC writer


def server():
    env = os.environ
    return env["PGHOST"], env["PGPORT"], env["PGDATABASE"], env["PGUSER"], env["PGPASSWORD"]


def connectorx_read(sslmode, out):
    """ConnectorX reads into Arrow (what Polars' read_database_uri does); Polars adds the month and
    writes the partitioned Parquet (pyarrow's strftime and write_dataset took twice as long)."""
    if os.environ.get("POLARS_MAX_THREADS") != str(PARTITIONS):
        sys.exit(f"engines.py: set POLARS_MAX_THREADS={PARTITIONS} before starting Python (Polars reads it once)")
    import connectorx as cx
    import polars as pl

    host, port, database, user, password = server()
    table = cx.read_sql(
        f"postgresql://{user}:{password}@{host}:{port}/{database}?sslmode={sslmode}",
        f"SELECT * FROM public.{TABLE}",
        partition_on=PARTITION_COLUMN,
        partition_num=PARTITIONS,
        return_type="arrow",
    )
    frame = pl.from_arrow(table)
    del table
    # ConnectorX reads every numeric as decimal(38,10): back to the table's numeric(15,2), so that
    # every engine writes the same Parquet schema.
    decimals = [name for name, _, t in COLUMNS if t == "DECIMAL(15,2)"]
    frame = frame.with_columns(
        [pl.col(name).cast(pl.Decimal(15, 2)) for name in decimals]
        + [pl.col("l_shipdate").dt.strftime("%Y-%m").alias(MONTH)]
    )
    frame.lazy().sink_parquet(
        pl.PartitionBy(out, key=MONTH, include_key=False),
        compression="snappy",
        mkdir=True,
    )


def spark_session(app):
    from pyspark.sql import SparkSession

    jar = os.environ["PG_JDBC_JAR"]
    spark = (
        SparkSession.builder.master(f"local[{PARTITIONS}]")
        .appName(app)
        .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "8g"))
        .config("spark.jars", jar)
        .config("spark.sql.parquet.compression.codec", "snappy")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def jdbc_options(sslmode, **parameters):
    """Spark's JDBC options; parameters go into the driver's URL."""
    host, port, database, user, password = server()
    url = f"jdbc:postgresql://{host}:{port}/{database}?" + "&".join(
        f"{k}={v}" for k, v in {"sslmode": sslmode, **parameters}.items()
    )
    return {
        "url": url,
        "driver": "org.postgresql.Driver",
        "user": user,
        "password": password,
        "numPartitions": str(PARTITIONS),
    }


def pyspark_read(sslmode, lower, upper, out):
    from pyspark.sql import functions as F

    spark = spark_session("lineitem-from-postgres")
    frame = (
        spark.read.format("jdbc")
        .options(**jdbc_options(sslmode))
        .option("dbtable", f"public.{TABLE}")
        .option("partitionColumn", PARTITION_COLUMN)
        .option("lowerBound", lower)
        .option("upperBound", upper)
        .option("fetchsize", str(FETCH_SIZE))
        .load()
    )
    frame = frame.withColumn(MONTH, F.date_format("l_shipdate", "yyyy-MM"))
    frame.write.option("compression", "snappy").partitionBy(MONTH).parquet(out)
    spark.stop()


def pyspark_write(sslmode, src):
    spark = spark_session("lineitem-to-postgres")
    frame = spark.read.parquet(src)
    (
        frame.write.format("jdbc")
        # The driver rewrites each batch of single-row INSERTs into multi-row INSERTs.
        .options(**jdbc_options(sslmode, reWriteBatchedInserts="true"))
        .option("dbtable", f"public.{COPY_TABLE}")
        .option("batchsize", str(BATCH_SIZE))
        .mode("append")
        .save()
    )
    spark.stop()


COMMANDS = {
    "connectorx-read": (connectorx_read, 2),
    "pyspark-read": (pyspark_read, 4),
    "pyspark-write": (pyspark_write, 2),
}


def main():
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command not in COMMANDS or len(args) != COMMANDS[command][1]:
        sys.exit(__doc__)
    function, _ = COMMANDS[command]
    if command.endswith("-read"):
        args[-1] = os.path.abspath(args[-1])
        if os.path.exists(args[-1]):
            sys.exit(f"engines.py: {args[-1]} exists; the output folder must be new")
    function(*args)


if __name__ == "__main__":
    main()
