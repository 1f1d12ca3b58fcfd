"""Stream benchmark: Kafka → lakeFS ingest branches, beside Spark reading the same topic into `noop`.

A third query, "parse only", does just the two JSON parses of the contract check into ``noop``:
the ceiling of any sink that validates events. All run in one JVM on the same topic and trigger
size, each after a warm-up query of its own kind on the first 20,000 events (the first query of a
JVM runs at about half speed, and the classification's generated code is compiled on its first
batch: ~10 s here). Prints events/s of each, the ratios to noop (target ≥ 50 %), and the
per-batch latency of the lakeFS stream.

    python bench/bench_stream.py [--events 500000] [--max-offsets 200000]

Needs the local stack (`evcharging stack up`). Writes its results to bench/results/stream.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from pyspark.sql import functions as F

from evcharging.contracts import spark_event_schema
from evcharging.resources.from_settings import lakefs_resource
from evcharging.resources.kafka import create_topics
from evcharging.resources.spark import build_spark_session
from evcharging.settings import load_settings
from evcharging.streaming.batches import TAG_PREFIX, IngestBatchWriter
from evcharging.streaming.job import StreamOptions, start_query
from simulator.events import SessionEventEncoder

T0_MS = 1767600000000
PARTITIONS = 4


async def produce(bootstrap: str, topic: str, events: int) -> None:
    from aiokafka import AIOKafkaProducer

    await create_topics(bootstrap, {topic: PARTITIONS})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=20, max_batch_size=262144, compression_type="gzip")
    await producer.start()
    try:
        per_session = 20
        pending = []
        for s in range(events // per_session):
            session = f"bench-{s:07d}"
            enc = SessionEventEncoder("bench", session, f"EVS{s % 5000 + 1:05d}", "EVS00001-1", f"V{s % 3000:06d}", "tesla-model-3",
                                      "CCS", 0.0)
            for seq in range(per_session):
                kind = "session_started" if seq == 0 else "session_ended" if seq == per_session - 1 else "charging_progress"
                value = enc.encode(kind, seq, T0_MS + s * 1000 + seq * 60000, 50.0, round(seq * 0.8333, 4), 20.0 + seq,
                                   "target_soc" if kind == "session_ended" else None)
                pending.append(await producer.send(topic, value=value, key=session.encode()))
            if len(pending) > 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def warm_up_writer(spark, settings, topic: str, stream: str, per_partition: int = 5000) -> None:
    """One batch of the first records of each partition through the lakeFS writer (compiles its code)."""
    ends = json.dumps({topic: {str(p): per_partition for p in range(PARTITIONS)}})
    records = (spark.read.format("kafka").option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
               .option("subscribe", topic).option("startingOffsets", "earliest").option("endingOffsets", ends).load())
    IngestBatchWriter(lakefs_resource(settings), stream, topic).write(records, 0)


def timed_query(spark, settings, topic: str, max_offsets: int, sink: str, tmp: Path, stream: str) -> dict:
    started = time.monotonic()
    if sink in ("noop", "parse"):
        records = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
                   .option("subscribe", topic).option("startingOffsets", "earliest")
                   .option("maxOffsetsPerTrigger", max_offsets).load())
        if sink == "parse":  # the two JSON parses classification cannot do without, nothing else
            raw = F.col("value").cast("string")
            records = records.select(F.json_object_keys(raw).alias("keys"), F.from_json(raw, spark_event_schema()).alias("e"))
        query = (records.writeStream.format("noop").option("checkpointLocation", str(tmp / f"{sink}-{uuid.uuid4().hex}"))
                 .trigger(availableNow=True).start())
    else:
        options = StreamOptions.from_settings(settings, stream_name=stream, topic=topic, checkpoint=tmp / stream,
                                              max_offsets_per_trigger=max_offsets, available_now=True)
        query = start_query(spark, settings, options)
    query.awaitTermination()
    elapsed = time.monotonic() - started
    progress = [p for p in query.recentProgress if p["numInputRows"]]
    rows = sum(p["numInputRows"] for p in progress)
    latencies = [p["durationMs"]["triggerExecution"] / 1000 for p in progress]
    return {"rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed, "batches": len(progress),
            "batch_latency_s_p50": statistics.median(latencies) if latencies else None,
            "batch_latency_s_max": max(latencies) if latencies else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--max-offsets", type=int, default=200_000)
    args = parser.parse_args()
    settings = load_settings()
    run = uuid.uuid4().hex[:8]
    topic = f"bench-stream-{run}"
    print(f"producing {args.events:,} events to {topic} …", file=sys.stderr)
    asyncio.run(produce(settings.kafka_bootstrap_servers, topic, args.events))
    tmp = settings.data_dir / "bench" / run
    spark = build_spark_session(settings, "bench-stream")
    spark.sparkContext.setLogLevel("WARN")
    timed_query(spark, settings, topic, 20_000, "noop", tmp, "")  # warm-up: JIT, class loading
    noop = timed_query(spark, settings, topic, args.max_offsets, "noop", tmp, "")
    parse = timed_query(spark, settings, topic, args.max_offsets, "parse", tmp, "")
    warm_up_writer(spark, settings, topic, f"bench{run}w")
    lake = timed_query(spark, settings, topic, args.max_offsets, "lakefs", tmp, f"bench{run}")
    spark.stop()
    ratio = lake["rows_per_s"] / noop["rows_per_s"]
    ceiling = parse["rows_per_s"] / noop["rows_per_s"]
    results = {"events": args.events, "max_offsets_per_trigger": args.max_offsets, "noop": noop, "parse_only": parse,
               "lakefs": lake, "ratio_lakefs_to_noop": ratio, "ratio_parse_only_to_noop": ceiling}
    out = Path(__file__).parent / "results" / "stream.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"noop sink      : {noop['rows_per_s']:>10,.0f} events/s ({noop['batches']} batches)")
    print(f"parse only     : {parse['rows_per_s']:>10,.0f} events/s = {ceiling:.0%} of noop: the ceiling of any "
          "sink that checks the contract (json_object_keys + from_json into noop)")
    print(f"lakeFS branches: {lake['rows_per_s']:>10,.0f} events/s ({lake['batches']} batches, "
          f"p50 batch {lake['batch_latency_s_p50']:.1f} s, max {lake['batch_latency_s_max']:.1f} s)")
    print(f"ratio lakeFS / noop: {ratio:.0%} (target ≥ 50 %)")
    # Leave the lake as we found it: the benchmark's branches and tags are not data.
    repo = lakefs_resource(settings).repo()
    for stream in (f"bench{run}", f"bench{run}w"):
        for tag in list(repo.tags(prefix=f"{TAG_PREFIX}{stream}-")):
            tag.delete()
        for branch in list(repo.branches(prefix=f"ingest-{stream}-")):
            branch.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
