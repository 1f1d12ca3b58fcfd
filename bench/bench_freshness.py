"""End-to-end freshness: an event emitted by the simulator → queryable in ClickHouse.

The simulator runs in real time (``--speed``) at a steady rate into Kafka; the stream runs
continuously (its normal trigger); this process plays Dagster's daemon — it evaluates the two lake
sensors every few seconds and executes their runs in process (publish each ingest batch, then
refresh ``lake_main`` and the warehouse facts). When a refresh finishes, every event it loaded is
queryable; its freshness is that moment minus the event's Kafka timestamp (set by the producer when
it sent the event). The simulator ramps up and tails off around its arrival window, so the figures
are for the events sent during the steady part (see ``steady_window``): its rate and freshness
p50/p95 (target p50 ≤ 60 s at 10,000 events/s); the same over all events is printed beside them.
It stops once every event the simulator sent is queryable. Everything runs in its own topics, repository, database and chDB directory.

    python bench/bench_freshness.py [--vehicles 20000] [--speed 300] [--minutes 3]

Needs the local stack (`evcharging stack up`). Writes bench/results/freshness.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def isolate(run: str, data_dir: Path) -> None:
    os.environ.update({
        "EVCHARGING_KAFKA_EVENTS_TOPIC": f"fresh-events-{run}", "EVCHARGING_KAFKA_MANIFESTS_TOPIC": f"fresh-manifests-{run}",
        "EVCHARGING_LAKEFS_REPOSITORY": f"fresh-{run}", "EVCHARGING_MONGO_DATABASE": f"fresh_{run}",
        "EVCHARGING_STREAM_NAME": f"fresh{run}", "EVCHARGING_CHDB_PATH": str(data_dir / "chdb"),
        "EVCHARGING_SPARK_CHECKPOINT_DIR": str(data_dir / "checkpoints"), "EVCHARGING_STREAM_TRIGGER_SECONDS": "5",
    })


def kafka_timestamps(settings) -> dict[tuple[int, int], float]:
    """(partition, offset) → the producer's timestamp in seconds, for every record of the topic."""
    from aiokafka import AIOKafkaConsumer

    async def read():
        consumer = AIOKafkaConsumer(settings.kafka_events_topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        out = {}
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=3000, max_records=50000)
                if not batch:
                    return out
                for tp, messages in batch.items():
                    out.update({(tp.partition, m.offset): m.timestamp / 1000 for m in messages})
        finally:
            await consumer.stop()

    return asyncio.run(read())


def steady_window(sent_at: list[float], bucket: float = 10.0) -> tuple[float, float, float]:
    """(start, end, events/s) of the steady part of the run: the simulator ramps up while the first
    sessions start and tails off while the last ones finish; steady is from the first to the last
    10-s bucket sending at least 80 % of the busiest buckets' rate (their 90th percentile)."""
    t0 = sent_at[0]
    counts: dict[int, int] = {}
    for t in sent_at:
        counts[int((t - t0) // bucket)] = counts.get(int((t - t0) // bucket), 0) + 1
    peak = sorted(counts.values())[int(0.9 * (len(counts) - 1))]
    busy = [b for b, n in counts.items() if n >= 0.8 * peak]
    lo, hi = t0 + min(busy) * bucket, t0 + (max(busy) + 1) * bucket
    return lo, hi, sum(counts.get(b, 0) for b in range(min(busy), max(busy) + 1)) / (hi - lo)


def p(values: list[float], q: int) -> float | None:
    """The q-th percentile (None without values)."""
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100)[q - 1]


def loaded_events(settings) -> int:
    from evcharging.resources.from_settings import warehouse_resource

    with warehouse_resource(settings).connect() as wh:
        return int(wh.query_rows(f"SELECT count() FROM {settings.clickhouse_database}.fact_charging_events FINAL")[0][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=20000)
    parser.add_argument("--speed", type=float, default=300, help="simulated seconds per wall second")
    parser.add_argument("--minutes", type=float, default=3, help="wall minutes of arrivals")
    args = parser.parse_args()

    from evcharging.settings import load_settings

    run = uuid.uuid4().hex[:8]
    data_dir = load_settings().data_dir / "bench" / f"freshness-{run}"
    isolate(run, data_dir)
    settings = load_settings()

    import dagster as dg

    from evcharging.definitions import defs
    from evcharging.defs.lake.sensors import ingest_commits
    from evcharging.resources.from_settings import lakefs_resource, resources, warehouse_resource

    lakefs = lakefs_resource(settings)
    lakefs.ensure_repository(f"s3://{settings.minio_bucket}/{settings.lakefs_repository}")
    asyncio.run(resources(settings)["kafka"].ensure_topics())
    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    reference = definitions.resolve_implicit_global_asset_job_def().get_subset(asset_selection={
        dg.AssetKey(["mongodb", "stations"]), dg.AssetKey(["mongodb", "vehicles"])})
    assert reference.execute_in_process(instance=instance).success
    refresh = definitions.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("lake_main"), dg.AssetKey(["clickhouse", "fact_charging_events"]),
                         dg.AssetKey(["clickhouse", "fact_charging_sessions"])},
        asset_check_selection=set())
    publish = definitions.resolve_job_def("publish_ingest_batches")

    hours = args.minutes * 60 * args.speed / 3600
    print(f"simulating {args.vehicles:,} vehicles for {hours:.1f} h at ×{args.speed:g} ({args.minutes:g} wall minutes)",
          file=sys.stderr)
    stream = subprocess.Popen([sys.executable, "-m", "evcharging.streaming"], cwd=ROOT, env=os.environ.copy(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    manifest_path = data_dir / "run.manifest.json"
    sim = subprocess.Popen([sys.executable, "-m", "simulator", "--vehicles", str(args.vehicles), "--duration", f"{hours:.3f}",
                            "--start", "2026-01-05T06:00:00+00:00", "--speed", str(args.speed), "--sink", "kafka",
                            "--manifest", str(manifest_path), "--quiet"], cwd=ROOT, env=os.environ.copy())
    sim_started = time.monotonic()
    ingest_cursor, main_cursor, loads = None, None, []  # loads: (commit, wall time it became queryable)
    deadline = time.time() + args.minutes * 60 + 900
    try:
        while time.time() < deadline:
            context = dg.build_sensor_context(instance=instance, cursor=ingest_cursor, resources={"lakefs": lakefs})
            result = ingest_commits(context)
            ingest_cursor = result.cursor
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            for request in result.run_requests:
                publish.execute_in_process(instance=instance, partition_key=request.partition_key, raise_on_error=False)
            head = lakefs.repo().branch(settings.lakefs_default_branch).get_commit().id
            if head != main_cursor:
                if refresh.execute_in_process(instance=instance, raise_on_error=False).success:
                    loads.append((head, time.time()))
                    main_cursor = head
                    print(f"  loaded main {head[:12]} at +{time.monotonic() - sim_started:.0f} s", file=sys.stderr)
            if sim.poll() is not None and head == main_cursor and loads and manifest_path.exists():
                # done when every event the simulator sent is queryable (none is left out of the figures)
                if loaded_events(settings) >= json.loads(manifest_path.read_text())["events_total"]:
                    break
            time.sleep(3)
    finally:
        os.killpg(stream.pid, signal.SIGTERM)
        stream.wait(120)
        if sim.poll() is None:
            sim.send_signal(signal.SIGINT)
            sim.wait(60)
    sim_wall = time.monotonic() - sim_started

    sent = kafka_timestamps(settings)
    freshness: list[tuple[float, float]] = []  # (sent at, freshness)
    with warehouse_resource(settings).connect() as wh:
        for commit, visible_at in loads:
            rows = wh.query_rows(f"SELECT kafka_partition, kafka_offset FROM {settings.clickhouse_database}."
                                 f"fact_charging_events FINAL WHERE load_commit = '{commit}'")
            freshness += [(sent[key], visible_at - sent[key]) for key in ((int(p), int(o)) for p, o in rows) if key in sent]
    manifest = json.loads(manifest_path.read_text())
    lo, hi, rate = steady_window(sorted(sent.values()))
    steady = [f for at, f in freshness if lo <= at < hi]
    everything = [f for _, f in freshness]
    results = {"vehicles": args.vehicles, "speed": args.speed, "events": manifest["events_total"],
               "steady_window_s": hi - lo, "steady_events_per_s": rate, "loads": len(loads),
               "events_measured": len(everything), "steady_events_measured": len(steady),
               "freshness_p50_s": p(steady, 50), "freshness_p95_s": p(steady, 95),
               "all_events_freshness_p50_s": p(everything, 50), "all_events_freshness_p95_s": p(everything, 95),
               "wall_s": sim_wall}
    out = ROOT / "bench" / "results" / "freshness.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"steady rate     : {rate:,.0f} events/s for {hi - lo:.0f} s ({len(steady):,} events; "
          f"{manifest['events_total']:,} in all, {len(loads)} warehouse loads)")
    print(f"freshness p50   : {results['freshness_p50_s']:.1f} s   (events sent at the steady rate; target ≤ 60 s "
          "at 10,000 events/s)")
    print(f"freshness p95   : {results['freshness_p95_s']:.1f} s")
    print(f"all events      : p50 {results['all_events_freshness_p50_s']:.1f} s, p95 "
          f"{results['all_events_freshness_p95_s']:.1f} s ({len(everything):,} measured, with the ramp and the tail)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
