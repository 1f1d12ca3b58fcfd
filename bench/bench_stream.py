"""Stream benchmark: Kafka → lakeFS ingest branches in JSON and in Avro, beside every ceiling.

The same events go to two topics, one per encoding. In one JVM, on the same trigger size, each
after a warm-up query of its own kind (the first query of a JVM runs at about half speed, and the
classification's generated code is compiled on its first batch), it measures into Spark's ``noop``
sink:

* ``noop``: Spark reading each topic, nothing else (the baseline: 100 %);
* ``json: double parse``: the keys (``json_object_keys``) and the values (``from_json``), the
  product's decode before issue 21;
* ``json: single parse``: ``from_json`` and the reference-shape test that stands in for the key
  parse (``canonical_json_pattern``), the product's decode now;
* ``json: variant``: one ``parse_json`` into a VARIANT, then ``variant_get`` per field;
* ``avro: decode``: the product's Avro decode (``from_avro`` with the writer schema, the end mark);

then the write floor of each encoding: the decode alone, straight into the lake's columns, written
as the product writes them (``foreachBatch``, Parquet by ``event_date``) but to local disk: no
checks, no lakeFS. No product that stores Parquet can beat it on this machine, so the targets are
also printed against it;

then the product itself, Kafka → lakeFS ingest branches, on each topic, and a profile of one batch
of each (branch, Spark job for decode + classification + Parquet, commit, tag; and within the Spark
job, reading → decoding → classifying → writing, each layer measured on the same records), with the
classification by part: each of its output columns alone, and its regular expressions alone; and
the lake rows written to noop, to local Parquet and through lakeFS, to tell the write from the path.

    python bench/bench_stream.py [--events 500000] [--max-offsets 200000]

Needs the local stack (`evcharging stack up`). Writes its results to bench/results/stream.json, or
stream-cluster.json in cluster mode (``EVCHARGING_STACK_MODE=cluster``: the stream on the standalone
cluster with ``EVCHARGING_SPARK_CORES_MAX`` cores, three brokers, topics replicated 3 times).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

from pyspark.sql import functions as F

from evcharging.contracts import FIELDS, RESCUED_COLUMN, spark_event_schema
from evcharging.resources.from_settings import lakefs_resource
from evcharging.resources.kafka import create_topics
from evcharging.resources.spark import build_spark_session, long_lived_driver
from evcharging.settings import load_settings
from evcharging.streaming.batches import TAG_PREFIX, IngestBatchWriter, branch_name
from evcharging.streaming.job import StreamOptions, start_query
from evcharging.transforms.avro import decode_avro
from evcharging.transforms.ingest import (TIMESTAMP_PATTERN, canonical_json_pattern, classify_records, lake_rows,
                                         valid_events)
from simulator.avro import ENCODERS, load_schemas
from stack_setup import describe, stack_setup  # beside this file

T0_MS = 1767600000000
PARTITIONS = 4
_VARIANT_TYPES = {"int": "bigint", "float": "double", "string": "string", "timestamp": "string"}


async def produce(bootstrap: str, topic: str, events: int, encoding: str, replicas: int) -> None:
    from aiokafka import AIOKafkaProducer

    await create_topics(bootstrap, {topic: PARTITIONS}, replication_factor=replicas)  # as the product's topic
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=20, max_batch_size=262144, compression_type="gzip")
    await producer.start()
    try:
        per_session = 20
        pending = []
        for s in range(events // per_session):
            session = f"bench-{s:07d}"
            enc = ENCODERS[encoding]("bench", session, f"EVS{s % 5000 + 1:05d}", "EVS00001-1", f"V{s % 3000:06d}",
                                     "tesla-model-3", "CCS", 0.0)
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


def _decoded(records, ceiling: str):
    """What each ceiling does to the Kafka records, into noop."""
    raw = F.col("value").cast("string")
    if ceiling == "double parse":
        return records.select(F.json_object_keys(raw).alias("keys"), F.from_json(raw, spark_event_schema()).alias("e"))
    if ceiling == "single parse":
        return records.select(raw.rlike(canonical_json_pattern()).alias("shape"),
                              F.from_json(raw, spark_event_schema()).alias("e"))
    if ceiling == "variant":
        parsed = records.select(F.parse_json(raw).alias("v"))
        return parsed.select(*[F.variant_get("v", f"$.{f.name}", _VARIANT_TYPES[f.kind]).alias(f.name) for f in FIELDS])
    if ceiling == "avro decode":
        decoded, avro = decode_avro(records, load_schemas())
        return decoded.select(avro.event.alias("e"), avro.complete.alias("complete"))
    if ceiling == "classification":
        return valid_events(classify_records(records))
    if ceiling in CLASSIFICATION_PARTS:
        return CLASSIFICATION_PARTS[ceiling](records)
    return records


# The classification's cost by what it computes. Spark prunes what a projection does not use, so
# selecting one output column of ``classify_records`` times the expressions behind it alone; the
# regular expressions, timed on their own, are the candidates a code reading names. Each part is
# read against "single parse" (JSON) or "avro decode" (the decode every part includes).
CLASSIFICATION_PARTS = {
    "event (dispatch + decode)": lambda records: classify_records(records).select("event"),
    "reason (the checks)": lambda records: classify_records(records).select("reason"),
    "rescued_fields": lambda records: classify_records(records).select(RESCUED_COLUMN),
    "reason + rescued_fields": lambda records: classify_records(records).select("reason", RESCUED_COLUMN),
    "lake rows (valid_events)": lambda records: valid_events(classify_records(records)),
    "regex: reference shape": lambda records: records.select(
        F.col("value").cast("string").rlike(canonical_json_pattern()).alias("shape")),
    "regex: event_time": lambda records: records.select(
        F.from_json(F.col("value").cast("string"), spark_event_schema())["event_time"].rlike(TIMESTAMP_PATTERN)
        .alias("time_ok")),
    "json parse only": lambda records: records.select(
        F.from_json(F.col("value").cast("string"), spark_event_schema()).alias("e")),
}


def floor_rows(records, encoding: str):
    """The lake rows with nothing but the decode (no checks, no rescued fields), through the
    product's own lake columns (``lake_rows``): what any writer of the lake must do."""
    if encoding == "avro":
        decoded, avro = decode_avro(records, load_schemas())
        events = decoded.select(avro.event.alias("event"), "partition", "offset")
    else:
        events = records.select(F.from_json(F.col("value").cast("string"), spark_event_schema()).alias("event"),
                                "partition", "offset")
    return lake_rows(events.withColumn(RESCUED_COLUMN, F.lit(None).cast("string")))


def _kafka(spark, settings, topic: str, max_offsets: int | None = None, ends: dict | None = None):
    reader = spark.readStream if ends is None else spark.read
    reader = (reader.format("kafka").option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
              .option("subscribe", topic).option("startingOffsets", "earliest"))
    if ends is not None:
        return reader.option("endingOffsets", json.dumps({topic: {str(p): o for p, o in ends.items()}})).load()
    return reader.option("maxOffsetsPerTrigger", max_offsets).load()


def timed_query(spark, settings, topic: str, max_offsets: int, sink: str, tmp: Path, stream: str = "",
                encoding: str = "") -> dict:
    """``sink``: a ceiling of ``_decoded`` (into noop), ``noop``, ``write floor`` (:func:`floor_rows`
    of ``encoding`` to local Parquet) or ``lakefs`` (the product)."""
    started = time.monotonic()
    if sink == "write floor":
        out = tmp / f"floor-{uuid.uuid4().hex}"

        def write(batch, _batch_id: int) -> None:
            floor_rows(batch, encoding).write.mode("append").partitionBy("event_date").parquet(f"file://{out}")

        query = (_kafka(spark, settings, topic, max_offsets).writeStream.foreachBatch(write)
                 .option("checkpointLocation", str(tmp / f"q-{uuid.uuid4().hex}")).trigger(availableNow=True).start())
    elif sink == "lakefs":
        options = StreamOptions.from_settings(settings, stream_name=stream, topic=topic, checkpoint=tmp / stream,
                                              max_offsets_per_trigger=max_offsets, available_now=True)
        query = start_query(spark, settings, options)
    else:
        records = _decoded(_kafka(spark, settings, topic, max_offsets), sink)
        query = (records.writeStream.format("noop").option("checkpointLocation", str(tmp / f"q-{uuid.uuid4().hex}"))
                 .trigger(availableNow=True).start())
    query.awaitTermination()
    elapsed = time.monotonic() - started
    if sink == "write floor":
        shutil.rmtree(out, ignore_errors=True)
    progress = [p for p in query.recentProgress if p["numInputRows"]]
    rows = sum(p["numInputRows"] for p in progress)
    latencies = [p["durationMs"]["triggerExecution"] / 1000 for p in progress]
    return {"rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed, "batches": len(progress),
            "batch_latency_s_p50": statistics.median(latencies) if latencies else None,
            "batch_latency_s_max": max(latencies) if latencies else None}


def _timed_writes(records, lake_uri: str, local_dir: Path) -> dict[str, float]:
    """The lake rows written three ways, each run once untimed first (its code compiled): to
    ``noop``, as the product's Parquet (by event_date) to a local directory, and the same through
    lakeFS's S3 gateway (the product's path, without its Observation)."""
    seconds = {}
    targets = {"noop": None, "local Parquet": f"file://{local_dir}", "Parquet through lakeFS": lake_uri}
    for name, uri in targets.items():
        def write() -> None:
            rows = valid_events(classify_records(records))
            if uri is None:
                rows.write.format("noop").mode("overwrite").save()
            else:
                rows.write.mode("overwrite").partitionBy("event_date").parquet(uri)
        write()
        started = time.monotonic()
        write()
        seconds[name] = round(time.monotonic() - started, 3)
    shutil.rmtree(local_dir, ignore_errors=True)
    return seconds


def profile_batch(spark, settings, topic: str, encoding: str, per_partition: int, stream: str) -> dict:
    """One batch's seconds per stage: inside its Spark job by layers (each measured alone on the
    same records, the differences being the layer's cost), then the writer's own stages."""
    ends = {p: per_partition for p in range(PARTITIONS)}
    records = _kafka(spark, settings, topic, ends=ends)
    writer = IngestBatchWriter(lakefs_resource(settings), stream, topic)
    # Untimed warm-up as batch 0 (the same stream, so the benchmark's clean-up removes it): the
    # session's first S3A write and the write path's JIT took ~4 s, which the first encoding
    # profiled used to carry in its "files" stage.
    writer.write(records, 0)
    layers = {}
    stages = {"read": "noop", "decode": "avro decode" if encoding == "avro" else "single parse",
              "classification": "classification"}
    for layer, ceiling in stages.items():
        frame = _decoded(records, ceiling)
        started = time.monotonic()
        frame.write.format("noop").mode("overwrite").save()
        layers[f"spark: {layer}"] = round(time.monotonic() - started, 3)
    writer.write(records, 1)
    parts = {}
    for part in CLASSIFICATION_PARTS:
        if part.startswith(("regex", "json")) and encoding == "avro":
            continue
        frame = _decoded(records, part)
        frame.write.format("noop").mode("overwrite").save()  # its generated code compiled, untimed
        started = time.monotonic()
        frame.write.format("noop").mode("overwrite").save()
        parts[part] = round(time.monotonic() - started, 3)
    # On the batch's own branch, after its commit: the scratch files go with the branch at clean-up.
    writes = _timed_writes(records, writer.lakefs.s3a_uri(branch_name(stream, 1), "_bench_write"),
                           settings.data_dir / "bench" / f"{stream}-write")
    return {"events": per_partition * PARTITIONS, **layers, **{f"writer: {k}": v for k, v in writer.last_stage_seconds.items()},
            "classification parts": parts, "lake rows written": writes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--max-offsets", type=int, default=200_000)
    args = parser.parse_args()
    settings = load_settings()
    run = uuid.uuid4().hex[:8]
    topics = {enc: f"bench-stream-{run}-{enc}" for enc in ("json", "avro")}
    for encoding, topic in topics.items():
        print(f"producing {args.events:,} events in {encoding} to {topic} …", file=sys.stderr)
        asyncio.run(produce(settings.kafka_bootstrap_servers, topic, args.events, encoding, settings.kafka_replicas))
    tmp = settings.data_dir / "bench" / run
    spark = build_spark_session(settings, "bench-stream", long_lived_driver(settings))  # the stream's own driver
    spark.sparkContext.setLogLevel("WARN")
    load = [os.getloadavg()[0]]
    plan = [("json", "noop"), ("json", "double parse"), ("json", "single parse"), ("json", "variant"),
            ("avro", "noop"), ("avro", "avro decode"), ("json", "write floor"), ("avro", "write floor")]
    results: dict[str, dict] = {}
    for encoding, sink in plan:
        timed_query(spark, settings, topics[encoding], 20_000, sink, tmp, encoding=encoding)  # warm-up of its own kind
        results[f"{encoding}: {sink}"] = timed_query(spark, settings, topics[encoding], args.max_offsets, sink, tmp,
                                                     encoding=encoding)
        load.append(os.getloadavg()[0])
    profiles = {}
    for encoding, topic in topics.items():
        profiles[encoding] = profile_batch(spark, settings, topic, encoding, 25_000, f"bench{run}{encoding}w")  # also the warm-up
        results[f"{encoding}: lakeFS"] = timed_query(spark, settings, topic, args.max_offsets, "lakefs", tmp,
                                                     f"bench{run}{encoding}")
        load.append(os.getloadavg()[0])
    spark.stop()

    def rate(name: str) -> float:
        return results[name]["rows_per_s"]

    noop = rate("json: noop")
    summary = {
        "json lakeFS / json noop": rate("json: lakeFS") / noop,
        "json lakeFS / json single parse": rate("json: lakeFS") / rate("json: single parse"),
        "avro lakeFS / json noop": rate("avro: lakeFS") / noop,
        "avro lakeFS / avro noop": rate("avro: lakeFS") / rate("avro: noop"),
        # The floors against the same baselines: above them no product that writes the lake's
        # Parquet can go; and how close the product comes to its floor.
        "json write floor / json single parse": rate("json: write floor") / rate("json: single parse"),
        "avro write floor / avro noop": rate("avro: write floor") / rate("avro: noop"),
        "json lakeFS / json write floor": rate("json: lakeFS") / rate("json: write floor"),
        "avro lakeFS / avro write floor": rate("avro: lakeFS") / rate("avro: write floor"),
    }
    setup = stack_setup(settings)  # single: local[2] and one broker; cluster: the standalone cluster, three brokers
    out = Path(__file__).parent / "results" / ("stream.json" if settings.stack_mode == "single" else "stream-cluster.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"setup": setup, "events": args.events, "max_offsets_per_trigger": args.max_offsets,
                               "results": results, "ratios": summary, "batch_profiles": profiles,
                               "load_average_1m": load}, indent=2))
    print(f"stack: {describe(setup)}")
    print(f"{'query':28} {'events/s':>10} {'of json noop':>13} {'batches':>8} {'p50 batch s':>12}")
    for name, r in results.items():
        p50 = f"{r['batch_latency_s_p50']:.1f}" if r["batch_latency_s_p50"] is not None else "-"
        print(f"{name:28} {r['rows_per_s']:>10,.0f} {r['rows_per_s'] / noop:>13.0%} {r['batches']:>8} {p50:>12}")
    for name, ratio in summary.items():
        print(f"{name:34} {ratio:.0%}")
    print("targets: avro lakeFS ≥ 50 % of noop; json lakeFS ≥ 80 % of its single-parse ceiling "
          "(a write floor below its target puts the target out of reach of any product writing Parquet here)")
    for encoding, profile in profiles.items():
        print(f"one batch of {profile['events']:,} {encoding} events, seconds: " +
              ", ".join(f"{k} {v:.2f}" for k, v in profile.items() if k not in ("events", "classification parts", "lake rows written")))
        print(f"  classification by part (each includes the decode, read once more), seconds: " +
              ", ".join(f"{k} {v:.2f}" for k, v in profile["classification parts"].items()))
        print(f"  lake rows written (read, decode and classification included), seconds: " +
              ", ".join(f"{k} {v:.2f}" for k, v in profile["lake rows written"].items()))
    print(f"load average (1 min) during the run: {', '.join(f'{v:.1f}' for v in load)}")
    # Leave the lake as we found it: the benchmark's branches and tags are not data.
    repo = lakefs_resource(settings).repo()
    for encoding in topics:
        for stream in (f"bench{run}{encoding}", f"bench{run}{encoding}w"):
            for tag in list(repo.tags(prefix=f"{TAG_PREFIX}{stream}-")):
                tag.delete()
            for branch in list(repo.branches(prefix=f"ingest-{stream}-")):
                branch.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
