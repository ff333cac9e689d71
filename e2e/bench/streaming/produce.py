#!/usr/bin/env python3
"""The streaming benchmark's Kafka client (e2e/bench/streaming/run.sh): topics and events.

    produce.py create --bootstrap HOST:PORT --topic T --partitions N
    produce.py send   --bootstrap HOST:PORT --topic T --rate R --count N [--pages 8] [--out FILE]
    produce.py delete --bootstrap HOST:PORT --topic T

send: N JSON events at R events/s (R = 0: as fast as the producer goes, for the backlog). Open
loop: event i is due at start + i/R and carries that due time as ts_ms, so a producer that falls
behind cannot hide latency (no coordinated omission); the events due are sent every 5 ms. Each
value is one JSON object

    {"id":17,"page":"p1","ms":412,"ts_ms":1764786000123}

id: 0..N-1, unique; page: one of --pages values (the sinks' partition column); ms: a seeded
pseudo-random duration; ts_ms: the due time in Unix ms. The record's Kafka timestamp (CreateTime)
is ts_ms too, and its key is the id, which spreads the events over the partitions. Idempotent
delivery with acks=all, so a retried send is never written twice.

It writes one JSON object (to --out, and to stdout): sent, acked, wall seconds, the achieved rate,
max_behind_ms (how far behind its schedule the producer ever was: if large, the rate was too high
for it) and `ends`, each partition's end offset after the last acknowledgement, which is what a
sink must hold exactly once. Exits 1 if any event was not acknowledged.
Needs confluent-kafka (requirements.txt; its wheel ships librdkafka).
"""

import argparse
import json
import random
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT_S = 60
TICK_S = 0.005  # as linger.ms


def create(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)],
                                  operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)
    futures[args.topic].result(timeout=TIMEOUT_S)
    # Wait until every partition has a leader: a send right after creation would otherwise wait.
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        meta = admin.list_topics(args.topic, timeout=10).topics.get(args.topic)
        if meta and meta.error is None and len(meta.partitions) == args.partitions and all(
                p.leader >= 0 for p in meta.partitions.values()):
            return 0
        time.sleep(0.1)
    sys.exit(f"produce.py: topic {args.topic} has no leader for every partition after {TIMEOUT_S} s")


def delete(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.delete_topics([args.topic], operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)[args.topic].result(
        timeout=TIMEOUT_S)
    return 0


def ends(bootstrap, topic):
    """{partition: end offset} of topic."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kglue-bench-ends",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=TIMEOUT_S).topics[topic]
        return {str(p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S)[1]
                for p in sorted(meta.partitions)}
    finally:
        consumer.close()


def send(args):
    errors = []
    acked = 0

    def on_delivery(err, _msg):
        nonlocal acked
        if err is not None:
            errors.append(str(err))
        else:
            acked += 1

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "enable.idempotence": True,  # a retried send is not written twice
        "linger.ms": 5,  # small batches: latency is what is measured
        "queue.buffering.max.messages": 1_000_000,
        "message.timeout.ms": TIMEOUT_S * 1000,
    })
    rnd = random.Random(args.seed)
    rate = args.rate if args.rate > 0 else float("inf")
    start = time.time()
    max_behind = 0.0
    i = 0
    while i < args.count:
        now = time.time()
        due_until = args.count if rate == float("inf") else min(args.count, int((now - start) * rate) + 1)
        if i < due_until:
            # Everything due by now, each stamped with its own due time.
            while i < due_until:
                due = start if rate == float("inf") else start + i / rate
                ts_ms = int(due * 1000)
                value = json.dumps({"id": i, "page": f"p{i % args.pages}", "ms": rnd.randrange(1, 5000),
                                    "ts_ms": ts_ms}, separators=(",", ":"))
                while True:
                    try:
                        producer.produce(args.topic, value=value, key=str(i), timestamp=ts_ms,
                                         on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.01)
                i += 1
                if i % 10_000 == 0:
                    producer.poll(0)
            if rate != float("inf"):
                max_behind = max(max_behind, time.time() - (start + (i - 1) / rate))
            producer.poll(0)
        else:
            # Sleep until the next event is due, and at least TICK_S: sending in ticks rather than
            # one event at a time costs a quarter of the CPU at 20,000 events/s, which the engine
            # on the same 2 cores gets instead. An event leaves at most TICK_S after it was due;
            # its ts_ms still says when it was due.
            producer.poll(min(0.01, max(TICK_S, start + i / rate - now)))
    left = producer.flush(TIMEOUT_S)
    wall = time.time() - start
    out = {"sent": args.count, "acked": acked, "errors": len(errors), "unflushed": left,
           "wall_s": round(wall, 3), "rate": round(args.count / wall, 1), "target_rate": args.rate,
           "max_behind_ms": round(max_behind * 1000, 1), "first_error": errors[0] if errors else None,
           "ends": ends(args.bootstrap, args.topic)}
    text = json.dumps(out)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    if errors or left or acked != args.count:
        print(f"produce.py: {args.count - acked} of {args.count} events not acknowledged"
              f"{': ' + errors[0] if errors else ''}", file=sys.stderr)
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("create", "send", "delete"):
        p = sub.add_parser(name)
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--topic", required=True)
        if name == "create":
            p.add_argument("--partitions", type=int, required=True)
        if name == "send":
            p.add_argument("--rate", type=float, required=True, help="events per second (0: unthrottled)")
            p.add_argument("--count", type=int, required=True)
            p.add_argument("--pages", type=int, default=8)
            p.add_argument("--seed", type=int, default=17)
            p.add_argument("--out")
    args = ap.parse_args()
    try:
        return {"create": create, "send": send, "delete": delete}[args.command](args)
    except KafkaException as e:
        sys.exit(f"produce.py {args.command} {args.topic}: {e}")


if __name__ == "__main__":
    sys.exit(main())
