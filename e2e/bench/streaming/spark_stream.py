#!/usr/bin/env python3
"""PySpark Structured Streaming side of the streaming benchmark (e2e/bench/streaming/run.sh):
the same job as kglue-job.yaml, Kafka JSON -> Parquet partitioned by page.

    spark_stream.py --bootstrap HOST:PORT --topic T --out DIR --checkpoint DIR --jars-file F
                    (--available-now | --trigger-seconds N --until-rows R --run-seconds S)
                    [--max-offsets-per-trigger M] [--threads 2] --result FILE

Reads the topic from the earliest offsets (failOnDataLoss on), parses each value with from_json
as {id bigint, page string, ms bigint, ts_ms bigint}, keeps Kafka's partition, offset and
timestamp (as kafka_ts), and appends Parquet partitioned by page, with a checkpoint location.
  --available-now      trigger(availableNow=True): read what the topic holds now, then stop
                       (the throughput run; kglue's --until-caught-up)
  --trigger-seconds N  trigger(processingTime='N seconds') (the fixed-rate run; kglue's
                       windowSeconds): stops once R rows are committed, or after S seconds
  --max-offsets-per-trigger M   the batch cap (kglue's maxRecordsPerBatch)
  --jars-file F        spark.jars = the ':'-separated jar paths in F: the Kafka source, which
                       PySpark does not ship (lib.sh's setup_spark_kafka resolves them)

Writes one JSON object to --result: startup_s (process start -> SparkSession ready: the JVM and
the SparkContext), query_s (start() -> stopped), rows (sum of numInputRows over the batches),
batches (with rows), error (the query's exception, if any) and each batch's progress. Exits 1 if
the query failed.
"""
import time

T0 = time.time()  # before pyspark is imported: the JVM starts in getOrCreate()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import pyspark  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql.types import LongType, StringType, StructField, StructType  # noqa: E402

# The value's fields; kglue's Table (catalog/) declares the same columns.
SCHEMA = StructType([
    StructField("id", LongType()),
    StructField("page", StringType()),
    StructField("ms", LongType()),
    StructField("ts_ms", LongType()),
])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--jars-file", required=True)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--available-now", action="store_true")
    mode.add_argument("--trigger-seconds", type=int)
    ap.add_argument("--until-rows", type=int)
    ap.add_argument("--run-seconds", type=float, default=600)
    ap.add_argument("--max-offsets-per-trigger", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--result", required=True)
    args = ap.parse_args()
    if args.trigger_seconds and not args.until_rows:
        ap.error("--trigger-seconds needs --until-rows")

    with open(args.jars_file) as f:
        jars = [p for p in f.read().strip().split(":") if p]
    spark = (SparkSession.builder.master(f"local[{args.threads}]").appName("kglue-bench-streaming")
             .config("spark.jars", ",".join(jars))
             .config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", str(args.threads))
             .config("spark.driver.memory", "2g")
             # Every batch's progress, for the row count (default: the last 100).
             .config("spark.sql.streaming.numRecentProgressUpdates", "100000")
             # Keep every batch's _spark_metadata/<batch> log: the latency is read off their
             # times (sink.py). By default logs older than the last compaction are deleted after
             # 10 minutes, and every 10th batch compacts the log.
             .config("spark.sql.streaming.fileSink.log.deletion", "false")
             .config("spark.sql.streaming.fileSink.log.compactInterval", "1000000")
             .getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    t_ready = time.time()

    reader = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", args.bootstrap)
              .option("subscribe", args.topic)
              .option("startingOffsets", "earliest")
              .option("failOnDataLoss", "true"))
    if args.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", args.max_offsets_per_trigger)
    events = (reader.load()
              .select(F.from_json(F.col("value").cast("string"), SCHEMA).alias("v"),
                      "partition", "offset", "timestamp")
              .select("v.id", "v.ms", "v.ts_ms", "partition", "offset", F.col("timestamp").alias("kafka_ts"),
                      "v.page"))
    writer = (events.writeStream.format("parquet")
              .option("path", args.out)
              .option("checkpointLocation", args.checkpoint)
              .partitionBy("page")
              .outputMode("append"))
    if args.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{args.trigger_seconds} seconds")

    t_start = time.time()
    query = writer.start()
    print(f"spark_stream: query started {t_start - T0:.1f} s after the process", file=sys.stderr, flush=True)
    if args.available_now:
        try:
            query.awaitTermination()
        except Exception:  # the query's exception is reported below
            pass
    else:
        deadline = t_start + args.run_seconds
        while time.time() < deadline and query.isActive:
            if sum(p["numInputRows"] for p in query.recentProgress) >= args.until_rows:
                break
            time.sleep(0.2)
        query.stop()
    t_end = time.time()
    progress = [{"batchId": p["batchId"], "rows": p["numInputRows"],
                 "triggerMs": p["durationMs"].get("triggerExecution"), "timestamp": p["timestamp"]}
                for p in query.recentProgress]
    exc = query.exception()
    result = {"pyspark": pyspark.__version__, "startup_s": round(t_ready - T0, 3),
              "query_s": round(t_end - t_start, 3), "rows": sum(p["rows"] for p in progress),
              "batches": len([p for p in progress if p["rows"]]),
              "error": str(exc) if exc else None, "progress": progress}
    with open(args.result, "w") as f:
        f.write(json.dumps(result) + "\n")
    spark.stop()
    if exc:
        print(f"spark_stream: the query failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
