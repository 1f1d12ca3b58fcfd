"""Simulator throughput: events/s and sessions/s into the null sink (the simulation's own cost), a
JSON-lines file and Kafka, per encoding (JSON, Avro), and, in the same run, Kafka's own Java
ProducerPerformance tool at each encoding's record size and the same count as the physical
baseline; prints the ratios.

    python bench/bench_simulator.py --sessions 20000 --kafka-bootstrap 127.0.0.1:9092
    python bench/bench_simulator.py --sinks kafka --sessions 1000000 --progress-interval 300
    python bench/bench_simulator.py --profile null      # cProfile of the hot path
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.reference import from_documents  # noqa: E402
from simulator.runner import run  # noqa: E402
from simulator.sink import FileSink, KafkaSink, NullSink, create_topics, kafka_compression  # noqa: E402
from simulator.synthetic import synthetic_documents  # noqa: E402
from simulator.world import World, WorldConfig  # noqa: E402

PRODUCER_PROPS = ("acks=all", "linger.ms=5", "batch.size=131072", "compression.type=lz4", "enable.idempotence=true")


@dataclass
class Result:
    name: str
    events: int
    sessions: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    def line(self) -> str:
        return (f"{self.name:<28} {self.events:>11,} events {self.seconds:>8.1f} s "
                f"{self.events_per_s:>11,.0f} events/s {self.sessions / self.seconds:>9,.0f} sessions/s")


def make_world(args, encoding: str = "json", sessions: int | None = None) -> World:
    stations, vehicles = from_documents(*synthetic_documents(stations=args.stations))
    return World(stations, vehicles, WorldConfig(
        seed=args.seed, run_id=f"bench-{uuid.uuid4().hex[:8]}", vehicles=args.vehicles, duration_h=None,
        sessions=sessions or args.sessions, progress_interval_s=args.progress_interval, encoding=encoding))


def mean_record_size(args, encoding: str) -> int:
    """Bytes per event of ``encoding``, from a small run of the same world (for the baseline)."""
    world, sizes, until = make_world(args, encoding, sessions=500), [], 0.0
    while not world.finished:
        until += 600.0
        sizes += [len(value) for _, value in world.advance(until)]
    return round(sum(sizes) / len(sizes))


async def _topic_size(bootstrap: str, topic: str, partitions: int) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return sum(ends.values())
    finally:
        await consumer.stop()


def bench_sink(name: str, args, sink, encoding: str = "json") -> Result:
    world = make_world(args, encoding)
    profiler = cProfile.Profile() if args.profile == name else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    manifest = asyncio.run(run(world, sink))
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - start
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return Result(f"simulator -> {name} ({encoding})", manifest.events_total, manifest.sessions_started, seconds)


def stack_kafka_libs() -> Path:
    """The jars the local stack runs Kafka from: the cache folder its recipe names (built if missing)."""
    from evcharging.settings import load_settings
    from evcharging.stack.builds import kafka_libs

    return kafka_libs(load_settings().cache_dir)


def producer_performance(args, topic: str, records: int, record_size: int) -> Result:
    libs = Path(os.path.expanduser(args.kafka_libs)) if args.kafka_libs else stack_kafka_libs()
    command = ["java", "-Xmx512m", "-cp", f"{libs}/*", "org.apache.kafka.tools.ProducerPerformance",
               "--topic", topic, "--num-records", str(records), "--record-size", str(record_size),
               "--throughput", "-1", "--producer-props", f"bootstrap.servers={args.kafka_bootstrap}",
               *PRODUCER_PROPS]
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - start
    final = [line for line in out.splitlines() if " records sent," in line][-1]
    rate = float(re.search(r"records sent, ([\d.]+) records/sec", final).group(1))
    print(f"  ProducerPerformance: {final.strip()}")
    return Result(f"ProducerPerformance {record_size} B", records, 0, records / rate if rate else seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=20_000)
    p.add_argument("--vehicles", type=int, default=20_000)
    p.add_argument("--stations", type=int, default=2_000, help="synthetic stations")
    p.add_argument("--progress-interval", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sinks", default="null,file,kafka", help="comma-separated subset of null,file,kafka")
    p.add_argument("--encodings", default="json,avro", help="comma-separated subset of json,avro (the file sink: json)")
    p.add_argument("--kafka-bootstrap", default=os.environ.get("EVCHARGING_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--kafka-libs", help="Kafka's jars (default: the local stack's, from its build recipe)")
    p.add_argument("--no-baseline", action="store_true", help="skip ProducerPerformance")
    p.add_argument("--profile", choices=("null", "file", "kafka"), help="cProfile this sink's run")
    args = p.parse_args()
    sinks = args.sinks.split(",")
    print(f"{args.sessions:,} sessions, {args.vehicles:,} vehicles, {args.stations:,} stations, "
          f"progress every {args.progress_interval:g} s; Kafka compression {kafka_compression()}")

    results: dict[str, Result] = {}
    encodings = args.encodings.split(",")
    if "null" in sinks:
        for encoding in encodings:
            results[f"null {encoding}"] = bench_sink("null", args, NullSink(), encoding)
            print(results[f"null {encoding}"].line())
    if "file" in sinks:  # JSON lines only
        with tempfile.TemporaryDirectory() as tmp:
            results["file json"] = bench_sink("file", args, FileSink(Path(tmp) / "events.jsonl"))
        print(results["file json"].line())
    if "kafka" in sinks:
        for encoding in encodings:
            topic = f"bench-sim-{uuid.uuid4().hex[:8]}"
            asyncio.run(create_topics(args.kafka_bootstrap, {topic: args.partitions, f"{topic}-manifests": 1}))
            sink = KafkaSink(args.kafka_bootstrap, topic, f"{topic}-manifests")
            results[f"kafka {encoding}"] = kafka = bench_sink("kafka", args, sink, encoding)
            print(kafka.line())
            landed = asyncio.run(_topic_size(args.kafka_bootstrap, topic, args.partitions))
            print(f"  records in topic {topic}: {landed:,} (emitted {kafka.events:,})")
            if not args.no_baseline:
                record_size = mean_record_size(args, encoding)
                perf_topic = f"bench-perf-{uuid.uuid4().hex[:8]}"
                asyncio.run(create_topics(args.kafka_bootstrap, {perf_topic: args.partitions}))
                results[f"baseline {encoding}"] = producer_performance(args, perf_topic, kafka.events, record_size)
                print(results[f"baseline {encoding}"].line())

    print()
    for encoding in encodings:
        null = results.get(f"null {encoding}")
        for name in ("file", "kafka"):
            if null and f"{name} {encoding}" in results:
                print(f"{name} / null events/s ({encoding}): {results[f'{name} {encoding}'].events_per_s / null.events_per_s:.2f}")
        baseline = results.get(f"baseline {encoding}")
        if baseline:
            print(f"kafka sink / ProducerPerformance records/s ({encoding}): "
                  f"{results[f'kafka {encoding}'].events_per_s / baseline.events_per_s:.2f}")
        if baseline and null:
            # The simulation alone, before any Kafka work: a one-process simulator cannot write
            # faster than this, so a target above it needs a second process, not a faster sink.
            print(f"  floor: null sink / ProducerPerformance ({encoding}): {null.events_per_s / baseline.events_per_s:.2f}")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
