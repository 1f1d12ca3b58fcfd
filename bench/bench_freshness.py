"""End-to-end freshness through the path users run: an event emitted → queryable in ClickHouse.

`dagster dev` runs as `evcharging dev` starts it (webserver, daemon, code server, the queued run
coordinator with the project's lane limits, the default run launcher: one process per run); the
stream runs continuously (its normal trigger); the simulator emits at a steady real-time rate. The
sensors publish and load as they would for a user — nothing here executes a run.

An event is queryable when the `fact_charging_events` step that loaded its lakeFS commit ended (the
materialization's timestamp in the Dagster instance); its freshness is that moment minus the event's
Kafka timestamp (set by the producer when it sent the event). The simulator ramps up at the start,
so the headline is for the events sent during the steady part (see ``steady_window``); it is
stopped (SIGINT: it flushes and publishes its manifest) after ``--minutes``. Also reported: the
events/s sustained in the steady part, where the time goes (stream, publish, load), the largest
run queue per job (runs waiting or running, sampled every 2 s), each job's run durations, and the
drain: from the simulator's exit to every event queryable. It stops once every event is queryable. Everything runs
in its own topics, repository, MongoDB database, data directory (Dagster instance, chDB) and stream.

    python bench/bench_freshness.py [--vehicles 18000] [--speed 300] [--minutes 10]

For a rate that stays near 10,000 events/s for 10 minutes (the simulator follows a daily arrival
profile, so a high --speed sweeps its peaks and troughs through the run), simulate the day's
flattest hours slowly, with finer progress events:

    python bench/bench_freshness.py --vehicles 35000 --speed 30 --progress-interval 12 \
        --start 2026-01-05T08:00:00+00:00 --minutes 13

On an aged instance (issue 19's headline), the run's own warehouse, Dagster instance and lakeFS
repository are first given a SYNTHESIZED history (labelled; `bench_history`'s ageing: events in the
fact's own layout over the 20 days before ``--start``, with their load and sessions records, marts
and dim_time; finished runs; published-batch partitions and lakeFS tags) — then everything measured
is real, as above:

    python bench/bench_freshness.py --vehicles 35000 --speed 30 --progress-interval 12 \
        --start 2026-01-05T08:00:00+00:00 --minutes 13 --aged-events 250000000

The simulator writes its default encoding (Avro, Confluent's wire format); ``--encoding json`` runs
the same benchmark with JSON records (the stream reads both), written to ``*-json.json``.

The history's batches carry an earlier stream's name (``<stream>aged``): the stream numbers its
batches from 0 and would meet its own tags. Reading the freshness at the end looks only at the
simulator run's events (``run_id``), never at the history.

The soak (issue 19): two hours at ≥ 3,000 events/s, the simulated morning fast-forwarded so that
the run starts at a steady rate; its window starts once that burst is queryable. ``--soak`` adds
the first and last 15 minutes' freshness and run durations, the RSS and CPU of every long-lived
process and the event tables' active parts (``soak_probe``), disk per million events, runs per
hour, and the reconciliation at the end (the lanes' own once they caught up, then the full audit
in process):

    python bench/bench_freshness.py --soak --vehicles 35000 --speed 4 --progress-interval 3.2 \
        --start 2026-01-05T07:00:00+00:00 --fast-forward 2 --minutes 126

Needs the local stack (`evcharging stack up`). Writes bench/results/freshness.json (aged:
freshness-aged.json; soak: freshness-soak.json). Targets (issue 19): p50 ≤ 30 s and p95 ≤ 60 s at
a steady 10,000 events/s for 10 minutes, no run queue above 2, drain ≤ 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak_probe  # noqa: E402 — beside this file
from stack_setup import describe, stack_setup  # noqa: E402 — beside this file

ROOT = Path(__file__).resolve().parent.parent
JOBS = ("publish_ingest_batches", "refresh_lake_main", "refresh_sessions", "reconcile_warehouse")
PORT = 3395


def isolate(run: str, data_dir: Path, overrides: dict[str, str]) -> None:
    """Names of the run's own (topics, repository, database, stream, data dir: isolation only), and
    ``overrides`` of the project's settings, which are printed: the headline runs with none."""
    os.environ.update({
        "EVCHARGING_KAFKA_EVENTS_TOPIC": f"fresh-events-{run}", "EVCHARGING_KAFKA_MANIFESTS_TOPIC": f"fresh-manifests-{run}",
        "EVCHARGING_LAKEFS_REPOSITORY": f"fresh-{run}", "EVCHARGING_MONGO_DATABASE": f"fresh_{run}",
        "EVCHARGING_STREAM_NAME": f"fresh{run}", "EVCHARGING_DATA_DIR": str(data_dir),
        "EVCHARGING_DAGSTER_URL": f"http://127.0.0.1:{PORT}", **overrides,
    })
    print("settings changed from the project's defaults: " +
          (", ".join(f"{k}={v}" for k, v in overrides.items()) or "none"), file=sys.stderr, flush=True)


def kafka_timestamps(settings) -> dict[int, np.ndarray]:
    """Per partition, the producer's timestamp (s) of every record, indexed by offset − first offset."""
    from aiokafka import AIOKafkaConsumer

    async def read():
        consumer = AIOKafkaConsumer(settings.kafka_events_topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                    auto_offset_reset="earliest", enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
        await consumer.start()
        out: dict[int, list] = defaultdict(list)
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=3000, max_records=100_000)
                if not batch:
                    return out
                for tp, messages in batch.items():  # arrays, not tuples: a soak reads tens of millions
                    out[tp.partition].append(np.array([(m.offset, m.timestamp) for m in messages], dtype=np.int64))
        finally:
            await consumer.stop()

    stamps = {}
    for partition, chunks in asyncio.run(read()).items():
        offsets, millis = np.concatenate(chunks).T
        table = np.full(offsets.max() + 1, np.nan)
        table[offsets] = millis / 1000
        stamps[partition] = table
    return stamps


def steady_window(sent_at: np.ndarray, bucket: float = 10.0) -> tuple[float, float, float]:
    """(start, end, events/s) of the steady part of the run: from the first to the last 10-s bucket
    sending at least 80 % of the busiest buckets' rate (their 90th percentile)."""
    t0 = sent_at.min()
    counts = np.bincount(((sent_at - t0) // bucket).astype(int))
    peak = np.sort(counts[counts > 0])[int(0.9 * (np.count_nonzero(counts) - 1))]
    busy = np.flatnonzero(counts >= 0.8 * peak)
    lo, hi = t0 + busy.min() * bucket, t0 + (busy.max() + 1) * bucket
    return lo, hi, counts[busy.min():busy.max() + 1].sum() / (hi - lo)


def queryable_at(instance) -> dict[str, float]:
    """lakeFS commit → when the fact_charging_events step that loaded it ended."""
    import dagster as dg

    key, loaded, cursor = dg.AssetKey(["clickhouse", "fact_charging_events"]), {}, None
    records = []
    while True:  # at most 10,000 records a call
        page = instance.fetch_materializations(key, limit=10_000, cursor=cursor)
        records += page.records
        if not page.has_more:
            break
        cursor = page.cursor
    for record in records:
        commit = record.asset_materialization.tags.get("dagster/data_version")
        if commit and not record.asset_materialization.metadata["already_loaded"].value:
            loaded[commit] = min(loaded.get(commit, record.timestamp), record.timestamp)
    return loaded


def stage_times(lakefs, settings, rows) -> dict[str, np.ndarray]:
    """Per event row, when the stream committed its batch (``ingested``) and when the publish merged
    it into main (``merged``), from lakeFS alone: each ingest tag's commit holds its Kafka offset
    ranges and creation time, each merge commit on main names its ingest branch. Second resolution."""
    from evcharging.lake.ingest import branch_for_tag
    from evcharging.streaming.batches import META, TAG_PREFIX

    repo = lakefs.repo()
    merged_at = {}
    for commit in repo.ref(settings.lakefs_default_branch).log(first_parent=True):
        branch = (commit.metadata or {}).get(f"{META}ingest_branch")
        if branch:
            merged_at[branch] = commit.creation_date
    spans: dict[int, list[tuple[int, int, float, float]]] = defaultdict(list)
    for tag in repo.tags(prefix=f"{TAG_PREFIX}{settings.stream_name}-"):
        commit = tag.get_commit()
        merged = merged_at.get(branch_for_tag(tag.id), np.nan)
        for partition, (lo, hi) in json.loads((commit.metadata or {}).get(f"{META}kafka_offsets", "{}")).items():
            spans[int(partition)].append((lo, hi, commit.creation_date, merged))
    out = {"ingested": np.full(len(rows), np.nan), "merged": np.full(len(rows), np.nan)}
    partitions, offsets = rows.kafka_partition.to_numpy(), rows.kafka_offset.to_numpy()
    for partition, ranges in spans.items():
        ranges.sort()
        starts = np.array([r[0] for r in ranges])
        mask = partitions == partition
        at = np.searchsorted(starts, offsets[mask], side="right") - 1
        inside = (at >= 0) & (offsets[mask] < np.array([r[1] for r in ranges])[np.clip(at, 0, None)])
        for name, column in (("ingested", 2), ("merged", 3)):
            values = np.array([r[column] for r in ranges], dtype=float)[np.clip(at, 0, None)]
            target = out[name][mask]
            target[inside] = values[inside]
            out[name][mask] = target
    return out


def job_runs(instance, since: float) -> dict[str, list]:
    """Per job, the records of its runs created after ``since`` (not an aged instance's)."""
    from datetime import UTC

    import dagster as dg

    return {job: instance.get_run_records(dg.RunsFilter(job_name=job, created_after=datetime.fromtimestamp(since, UTC)))
            for job in JOBS}


def run_figures(runs: dict[str, list]) -> dict[str, dict]:
    """Per job (``job_runs``): its runs, their durations (start → end) and queue waits (created → start)."""
    out = {}
    for job, records in runs.items():
        durations = [r.end_time - r.start_time for r in records if r.start_time and r.end_time]
        waits = [r.start_time - r.create_timestamp.timestamp() for r in records if r.start_time]
        statuses = defaultdict(int)
        for r in records:
            statuses[r.dagster_run.status.value] += 1
        out[job] = {"runs": len(records), "statuses": dict(statuses),
                    "duration_p50_s": float(np.median(durations)) if durations else None,
                    "duration_max_s": max(durations, default=None),
                    "queue_wait_p50_s": float(np.median(waits)) if waits else None,
                    "queue_wait_max_s": max(waits, default=None)}
    return out


def run_spans(runs: dict[str, list]) -> dict[str, list[tuple[float, float]]]:
    """Per job (``job_runs``), (start, end) of each finished run."""
    return {job: [(r.start_time, r.end_time) for r in records if r.start_time and r.end_time]
            for job, records in runs.items()}


def queue_depths(instance) -> dict[str, int]:
    """Per job: runs not finished (waiting to start, or running)."""
    import dagster as dg

    open_statuses = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                     dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    return {job: instance.get_runs_count(dg.RunsFilter(job_name=job, statuses=open_statuses)) for job in JOBS}


def all_queryable(settings, lakefs, instance, run_id: str, expected: int) -> bool:
    """Every batch published and the warehouse at main's head — asked of lakeFS and Dagster; then, once,
    ClickHouse's count of the run's distinct events (waiting for chDB's lock if a step holds it)."""
    from evcharging.defs.lake.sensors import data_version
    from evcharging.defs.warehouse.assets import FACT_EVENTS
    from evcharging.lake.pending import ingest_branches
    from evcharging.resources.from_settings import warehouse_resource

    if ingest_branches(lakefs, settings.stream_name):  # a batch not published yet
        return False
    head = lakefs.repo().branch(settings.lakefs_default_branch).get_commit().id
    if data_version(instance, FACT_EVENTS) != head:
        return False
    with warehouse_resource(settings).connect() as wh:
        count = int(wh.query_rows(f"SELECT uniqExact(event_id) FROM {settings.clickhouse_database}.fact_charging_events "
                                  f"WHERE run_id = '{run_id}'")[0][0])
    return count >= expected


def lane_reconciliation(instance, after: float, say, timeout: float = 600) -> dict:
    """The verdict of the lanes' own reconciliation (``reconcile_warehouse``, started by the sensor
    after each sessions pass) once they caught up: the first run created after ``after`` (every event
    queryable) that passed or found a loss. Runs whose only differences are still on their way (the
    last loads' sessions not summarised yet) are skipped: the next pass catches up."""
    from datetime import UTC

    import dagster as dg

    deadline, seen, in_flight = time.time() + timeout, set(), 0
    while time.time() < deadline:
        records = instance.get_run_records(dg.RunsFilter(
            job_name="reconcile_warehouse", created_after=datetime.fromtimestamp(after, UTC),
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]), order_by="create_timestamp",
            ascending=True)
        for record in records:
            run_id = record.dagster_run.run_id
            if run_id in seen:
                continue
            seen.add(run_id)
            entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            if not entries:
                return {"run_id": run_id, "passed": False, "description": "the run left no check result"}
            evaluation = entries[0].dagster_event.event_specific_data
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN:
                in_flight += 1  # only differences on their way: wait for the next pass
                continue
            return {"run_id": run_id, "passed": evaluation.passed, "description": evaluation.description,
                    "loads_checked": evaluation.metadata["loads_checked"].value,
                    "runs_checked": evaluation.metadata["runs_checked"].value,
                    "passes_in_flight_before": in_flight}
        time.sleep(5)
    say(f"the lanes' reconciliation did not settle within {timeout:.0f} s of every event being queryable")
    return {"passed": False, "description": f"not settled within {timeout:.0f} s ({in_flight} passes in flight)"}


def full_audit(settings) -> dict:
    """The audit a person runs (``audit_warehouse``'s comparison), in process, after the soak: every
    manifest against the facts themselves."""
    from evcharging.resources.from_settings import warehouse_resource
    from evcharging.warehouse.load import load_log, unsessionized_commits
    from evcharging.warehouse.reconcile import latest_manifests, reconcile, warehouse_stage

    started = time.perf_counter()
    manifests = asyncio.run(latest_manifests(settings.kafka_bootstrap_servers, settings.kafka_manifests_topic))
    with warehouse_resource(settings).connect() as wh:
        db = settings.clickhouse_database
        result = reconcile(manifests, warehouse_stage(wh, db), load_log(wh, db), settings.kafka_events_topic,
                           unsessionized_loads=len(unsessionized_commits(wh, db)))
        rows, distinct = wh.query_rows(f"SELECT count(), uniqExact(event_id) FROM {db}.fact_charging_events")[0]
    return {"passed": result.passed, "differences": [str(d) for d in result.differences[:5]],
            "runs": len(manifests), "loads": result.loads, "rows_without_final": int(rows),
            "distinct_events": int(distinct), "seconds": round(time.perf_counter() - started, 1)}


def soak_figures(settings, args, sent, fresh, lo, hi, sampler, parts, disk_paths, disk_before, manifest, jobs,
                 spans, elapsed_s, lane_check) -> dict:
    """The soak's figures: first and last 15 minutes, RSS trends, the event tables' active parts, disk
    per million events, runs per hour, reconciliation (the lanes' own, then the full audit)."""
    span = 15 * 60
    disk_after = soak_probe.disk_bytes(disk_paths)
    added = {name: disk_after[name] - disk_before.get(name, 0) for name in disk_paths}
    millions = manifest["events_total"] / 1e6
    hours = elapsed_s / 3600
    return {
        "window": {"start": lo, "end": hi, "minutes": (hi - lo) / 60},
        "rate": soak_probe.rate_floor(sent, lo, hi),
        "freshness": soak_probe.windowed_p95(sent, fresh, lo, hi),
        "rss": sampler.trends((lo, lo + span), (hi - span, hi)),
        "rss_every_10_min": sampler.timeline((lo, hi)),
        "cpu_cores": sampler.cpu_trends((lo, lo + span), (hi - span, hi)),
        "chdb_parts": parts.trends((lo, lo + span), (hi - span, hi)),
        "run_durations": soak_probe.duration_trends(spans, (lo, lo + span), (hi - span, hi)),
        "disk_mb_per_million_events": {name: round(b / 1e6 / millions, 1) for name, b in added.items()},
        "disk_mb_added": {name: round(b / 1e6, 1) for name, b in added.items()},
        "runs_per_hour": {job: round(figures["runs"] / hours, 1) for job, figures in jobs.items()},
        "reconciliation_by_the_lanes": lane_check,
        "full_audit_in_process": full_audit(settings),
    }


def print_soak(soak: dict) -> None:
    fresh, rate = soak["freshness"], soak["rate"]
    print(f"soak window     : {soak['window']['minutes']:.0f} min once the fast-forwarded burst was queryable; "
          f"events/s per minute min {rate['min_per_s']:,.0f}, median {rate['median_per_s']:,.0f}, "
          f"max {rate['max_per_s']:,.0f} (target ≥ 3,000)")
    print(f"first 15 min    : p50 {fresh['first']['p50_s']:.1f} s, p95 {fresh['first']['p95_s']:.1f} s")
    print(f"last 15 min     : p50 {fresh['last']['p50_s']:.1f} s, p95 {fresh['last']['p95_s']:.1f} s  "
          f"(p95 last/first {fresh.get('p95_ratio_last_to_first', float('nan')):.2f}, target ≤ 1.20)")
    for role, trend in soak["rss"].items():
        print(f"  RSS {role:<22} first 15 min {trend['first_mb']:7.0f} MB, last {trend['last_mb']:7.0f} MB "
              f"(×{trend['ratio']:.2f}, target ≤ 1.10), max {trend['max_mb']:.0f} MB")
    print("  RSS every 10 min (MB): " + "; ".join(
        f"{role} {' '.join(f'{mb:.0f}' for mb in means)}" for role, means in soak["rss_every_10_min"].items()))
    print("  CPU cores busy, first 15 min → last: " + ", ".join(
        f"{role} {t['first_cores']:.2f} → {t['last_cores']:.2f}" for role, t in soak["cpu_cores"].items()))
    for table, trend in soak["chdb_parts"].items():
        print(f"  parts {table:<21} first 15 min {trend['first_parts']}, last {trend['last_parts']}, "
              f"most {trend['max_parts']}; a merge under way in {trend['merging_share']:.0%} of the samples")
    for job, trend in soak["run_durations"].items():
        print(f"  runs {job:<22} p50 first 15 min {trend['first_p50_s']:5.1f} s, last {trend['last_p50_s']:5.1f} s "
              f"(×{trend['ratio']:.2f}; {trend['runs'][0]} and {trend['runs'][1]} runs)")
    print("disk per M events: " + ", ".join(f"{n} {mb:.1f} MB" for n, mb in soak["disk_mb_per_million_events"].items()))
    print("runs per hour   : " + ", ".join(f"{job} {n:.0f}" for job, n in soak["runs_per_hour"].items()))
    lanes, audit = soak["reconciliation_by_the_lanes"] or {}, soak["full_audit_in_process"]
    print(f"reconciliation  : lanes {'exact' if lanes.get('passed') else 'NOT exact'} ({lanes.get('description')}); "
          f"full audit {'exact' if audit['passed'] else 'NOT exact'} ({audit['runs']} runs, {audit['loads']} loads, "
          f"{audit['rows_without_final']:,} rows without FINAL, {audit['distinct_events']:,} distinct events, "
          f"{audit['seconds']:.0f} s){'' if audit['passed'] else ': ' + '; '.join(audit['differences'])}")


def age(settings, lakefs, args, say) -> dict:
    """Give the run's own warehouse, Dagster instance and repository a SYNTHESIZED history (see the
    module docstring); then record main's head as loaded, so the first real load diffs from there."""
    import dagster as dg

    sys.path.insert(0, str(ROOT / "bench"))
    import bench_history as history
    from datetime import datetime, timedelta

    from evcharging.resources.from_settings import warehouse_resource
    from evcharging.warehouse.dimensions import extend_dim_time
    from evcharging.warehouse.load import LoadReport, record_load
    from evcharging.warehouse.marts import MARTS, rebuild_mart
    from evcharging.warehouse.schema import ensure_tables

    # bench_history's ageing works on module-level names: this warehouse, and history before --start.
    history.DB, history.STOP_ALL = settings.clickhouse_database, args.aged_events
    history.T0 = datetime.fromisoformat(args.start) - timedelta(minutes=1)
    started = time.perf_counter()
    batches, earlier_stream = (0, args.aged_batches), f"{settings.stream_name}aged"
    with warehouse_resource(settings).connect() as wh:
        ensure_tables(wh, settings.clickhouse_database)
        history.age_warehouse(wh, 0, args.aged_events, batches, days=20)
        for mart in MARTS:
            rebuild_mart(wh, settings.clickhouse_database, mart)
        extend_dim_time(wh, settings.clickhouse_database)
        settled = history.settle(wh)
        head = lakefs.repo().branch(settings.lakefs_default_branch).get_commit().id
        record_load(wh, settings.clickhouse_database, LoadReport(head, None, 0, 0, 0, 0))
    history.age_lake(lakefs, earlier_stream, batches)
    with dg.DagsterInstance.get() as instance:
        history.age_instance(instance, earlier_stream, batches, args.aged_runs)
    seconds = time.perf_counter() - started
    say(f"SYNTHESIZED history of {args.aged_events:,} events, {args.aged_batches:,} published batches, "
        f"{args.aged_runs:,} runs in {seconds:.0f} s (merges {settled})")
    return {"events": args.aged_events, "batches": args.aged_batches, "runs": args.aged_runs,
            "seconds": round(seconds), "merges": settled}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vehicles", type=int, default=18000)
    parser.add_argument("--speed", type=float, default=300, help="simulated seconds per wall second")
    parser.add_argument("--minutes", type=float, default=10,
                        help="wall minutes of arrivals; then the simulator is stopped (SIGINT)")
    parser.add_argument("--progress-interval", type=float, default=60,
                        help="simulated seconds between charging_progress events (the simulator's default: 60)")
    parser.add_argument("--start", default="2026-01-05T06:00:00+00:00", help="simulated start (the hour sets the "
                        "arrival profile: from 10:00 to 15:00 the rate is flattest)")
    parser.add_argument("--drain-timeout", type=float, default=900, help="seconds to wait after the simulator")
    parser.add_argument("--stream-trigger", type=int, default=None,
                        help="the stream's trigger in seconds (default: the project's, 10); printed when changed")
    parser.add_argument("--fast-forward", type=float, default=0.0, metavar="HOURS",
                        help="the simulator emits its first HOURS at once, then paces (a day under way: the soak "
                        "starts at a steady rate instead of ramping up); counted outside the measured window")
    parser.add_argument("--encoding", choices=("json", "avro"),
                        help="the simulator's record encoding (default: the simulator's, Avro; the stream reads "
                             "both); the results of a run that chose one are written with its name as a suffix")
    parser.add_argument("--soak", action="store_true", help="issue 19's soak: also sample every long-lived "
                        "process's RSS, the disk added, runs per hour, the first and last 15 minutes' freshness, "
                        "and reconcile at the end (writes freshness-soak.json)")
    parser.add_argument("--aged-events", type=int, default=0, help="SYNTHESIZED history first: events in the "
                        "warehouse (issue 19: 250,000,000); 0: an empty instance")
    parser.add_argument("--aged-batches", type=int, default=20_000, help="with --aged-events: published batches")
    parser.add_argument("--aged-runs", type=int, default=20_000, help="with --aged-events: finished Dagster runs")
    args = parser.parse_args()

    from evcharging.settings import load_settings

    run = uuid.uuid4().hex[:8]
    data_dir = load_settings().data_dir / "bench" / f"freshness-{run}"  # load_settings exported the stack's secrets
    overrides = {} if args.stream_trigger is None else {"EVCHARGING_STREAM_TRIGGER_SECONDS": str(args.stream_trigger)}
    isolate(run, data_dir, overrides)
    settings = load_settings()

    import dagster as dg

    from evcharging.dagster_dev import DagsterDev
    from evcharging.demo import load_reference
    from evcharging.resources.from_settings import resources, scratch_repository

    say = lambda message: print(f"· {message}", file=sys.stderr, flush=True)  # noqa: E731
    lakefs = scratch_repository(settings, settings.lakefs_repository)
    asyncio.run(resources(settings)["kafka"].ensure_topics())
    dev = DagsterDev(settings, PORT, log_file=data_dir / "dagster-dev.log")
    os.environ["DAGSTER_HOME"] = dev.env["DAGSTER_HOME"]
    aged = age(settings, lakefs, args, say) if args.aged_events else None
    started_at = time.time()
    load_reference(settings, say)
    dev.start(say)
    hours = args.fast_forward + args.minutes * 60 * args.speed / 3600
    say(f"dagster dev on :{PORT} (log {dev.log_file}); simulating {args.vehicles:,} vehicles for {hours:.1f} h "
        f"at ×{args.speed:g} ({args.minutes:g} wall minutes" +
        (f", the first {args.fast_forward:g} h at once" if args.fast_forward else "") + "), the stream running beside it")
    stack_dir = data_dir.parent.parent  # the stack's data directory (its services' storage)
    disk_paths = {"warehouse (chDB)": data_dir / "chdb", "Dagster instance": data_dir / "dagster_home",
                  "lake objects (MinIO)": stack_dir / "minio", "lakeFS metadata": stack_dir / "lakefs",
                  "Kafka log": stack_dir / "kafka"} if args.soak else {}
    disk_before = soak_probe.disk_bytes(disk_paths) if args.soak else {}
    stream = subprocess.Popen([sys.executable, "-m", "evcharging.streaming"], cwd=ROOT, env=os.environ.copy(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    manifest_path = data_dir / "run.manifest.json"
    sim = subprocess.Popen([sys.executable, "-m", "simulator", "--vehicles", str(args.vehicles), "--duration", f"{hours:.3f}",
                            "--start", args.start, "--speed", str(args.speed), "--sink", "kafka",
                            "--progress-interval", str(args.progress_interval), "--fast-forward", str(args.fast_forward),
                            *(["--encoding", args.encoding] if args.encoding else []),
                            "--manifest", str(manifest_path), "--quiet"], cwd=ROOT,
                           env=os.environ.copy(), start_new_session=True)
    sampler = soak_probe.RssSampler(stream.pid) if args.soak else None
    tables = data_dir / "chdb" / "data" / settings.clickhouse_database
    parts = soak_probe.PartsSampler({t: tables / t for t in ("fact_charging_events", "session_events_open")}) \
        if args.soak else None
    for probe in (sampler, parts):
        if probe:
            probe.start()
    max_depth: dict[str, int] = defaultdict(int)
    sim_done = drained = None
    stopping = False
    try:
        with dg.DagsterInstance.get() as instance:
            # The simulator is stopped after --minutes: its sessions still charging then would tail
            # off for simulated hours at a low rate (the manifest records what it sent).
            stop_at = time.time() + args.minutes * 60
            deadline = stop_at + 300 + args.drain_timeout  # until the simulator exits; then from its exit
            last_check = 0.0
            while time.time() < deadline:
                for job, depth in queue_depths(instance).items():
                    max_depth[job] = max(max_depth[job], depth)
                if sim_done is None and time.time() > stop_at and sim.poll() is None and not stopping:
                    sim.send_signal(signal.SIGINT)  # it finishes its step, flushes, publishes the manifest
                    stopping = True
                if sim_done is None and sim.poll() is not None:
                    sim_done = time.time()
                    deadline = sim_done + args.drain_timeout
                    say(f"simulator done (exit {sim.returncode}); waiting until every event is queryable")
                if sim_done and time.time() - last_check > 10 and manifest_path.exists():
                    last_check = time.time()
                    manifest = json.loads(manifest_path.read_text())
                    if all_queryable(settings, lakefs, instance, manifest["run_id"], manifest["events_total"]):
                        drained = time.time()
                        break
                if dev.proc.poll() is not None:
                    raise RuntimeError(f"dagster dev exited (code {dev.proc.returncode}); see {dev.log_file}")
                time.sleep(2)
            lane_check = lane_reconciliation(instance, drained, say) if args.soak and drained else None
            runs = job_runs(instance, since=started_at)
            loaded, jobs, spans = queryable_at(instance), run_figures(runs), run_spans(runs)
    finally:  # stop everything this started, whatever happened
        for probe in (sampler, parts):
            if probe:
                probe.stop()
        dev.stop(say)
        stream.send_signal(signal.SIGTERM)  # the stream finishes its batch and stops its JVM itself
        if sim.poll() is None:
            sim.send_signal(signal.SIGINT)
        for proc in (stream, sim):
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    if drained is None:
        print("not every event became queryable before the deadline", file=sys.stderr)
        return 1

    manifest = json.loads(manifest_path.read_text())
    stamps = kafka_timestamps(settings)
    from evcharging.resources.from_settings import warehouse_resource

    with warehouse_resource(settings).connect() as wh:
        rows = wh.query_arrow(f"SELECT kafka_partition, kafka_offset, load_commit, "
                              f"toUnixTimestamp64Milli(event_time) / 1000 AS event_s FROM "
                              f"{settings.clickhouse_database}.fact_charging_events WHERE run_id = "
                              f"'{manifest['run_id']}' LIMIT 1 BY event_id").to_pandas()
    sent = np.full(len(rows), np.nan)
    for partition, table in stamps.items():
        mask = (rows.kafka_partition == partition).to_numpy()
        sent[mask] = table[rows.kafka_offset.to_numpy()[mask]]
    visible = rows.load_commit.map(loaded).to_numpy(dtype=float)
    fresh = visible - sent
    ok = ~np.isnan(fresh)
    lo, hi, rate = steady_window(sent[ok])
    if args.fast_forward:  # the events of the fast-forwarded hours are a burst at the start, not the steady run
        paced = (rows.event_s.to_numpy() >= datetime.fromisoformat(args.start).timestamp() + args.fast_forward * 3600)
        burst_queryable = float(np.nanmax(visible[ok & ~paced]))
        lo = max(float(np.nanmin(sent[ok & paced])), burst_queryable)  # once the burst is queryable
        hi = float(np.nanmax(sent[ok & paced]))
        rate = float(np.count_nonzero(ok & (sent >= lo) & (sent < hi)) / (hi - lo))
    in_window = ok & (sent >= lo) & (sent < hi)
    steady = fresh[in_window]
    # Where the time goes, per stage (lakeFS commit times have whole seconds): the stream (sent →
    # its batch committed on an ingest branch), the publish (→ merged into main), the load (→ queryable).
    stages = stage_times(lakefs, settings, rows)
    stage_p50 = {}
    for name, delta in (("stream", stages["ingested"] - sent), ("publish", stages["merged"] - stages["ingested"]),
                        ("load", visible - stages["merged"])):
        delta = delta[in_window & ~np.isnan(delta)]
        stage_p50[f"{name}_p50_s"] = float(np.percentile(delta, 50)) if delta.size else None
        stage_p50[f"{name}_p95_s"] = float(np.percentile(delta, 95)) if delta.size else None
    results = {
        "mode": "dagster dev (daemon, queued run coordinator, default run launcher), continuous stream",
        "stack": stack_setup(settings),  # the environment's EVCHARGING_STACK_MODE, not a setting this bench changes
        "encoding": manifest["parameters"]["encoding"], "vehicles": args.vehicles, "speed": args.speed,
        "progress_interval": args.progress_interval,
        "start": args.start, "events": manifest["events_total"],
        "events_per_s": rate, "steady_window_s": hi - lo, "steady_events_measured": int(steady.size),
        "p50_s": float(np.percentile(steady, 50)), "p95_s": float(np.percentile(steady, 95)),
        "max_s": float(steady.max()), "stages": stage_p50,
        "all_events": {"measured": int(ok.sum()), "p50_s": float(np.percentile(fresh[ok], 50)),
                       "p95_s": float(np.percentile(fresh[ok], 95)), "max_s": float(fresh[ok].max())},
        "max_queue_depth": max(max_depth.values(), default=0), "max_queue_depth_per_job": dict(max_depth),
        "drain_s": drained - sim_done, "warehouse_loads": len(loaded), "jobs": jobs,
    }
    if aged:
        results["aged_history_SYNTHESIZED"] = aged
    if args.soak:
        results["soak"] = soak_figures(settings, args, sent[ok], fresh[ok], lo, hi, sampler, parts, disk_paths,
                                       disk_before, manifest, jobs, spans, drained - started_at, lane_check)
    name = "freshness-soak" if args.soak else "freshness-aged" if aged else "freshness"
    out = ROOT / "bench" / "results" / f"{name}{f'-{args.encoding}' if args.encoding else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"mode            : {results['mode']}")
    print(f"stack           : {describe(results['stack'])}")
    print(f"encoding        : {results['encoding']} (the simulator's records on Kafka"
          f"{'' if args.encoding else ', its default'})")
    print(f"instance        : " + (f"aged, SYNTHESIZED history of {aged['events']:,} events, {aged['batches']:,} "
                                   f"published batches, {aged['runs']:,} runs" if aged else "empty"))
    print(f"steady rate     : {rate:,.0f} events/s for {hi - lo:.0f} s ({steady.size:,} events; "
          f"{manifest['events_total']:,} in all, {len(loaded)} warehouse loads)")
    print(f"freshness       : p50 {results['p50_s']:.1f} s, p95 {results['p95_s']:.1f} s, max {results['max_s']:.1f} s "
          "(target p50 ≤ 30 s, p95 ≤ 60 s)")
    print("stages (p50/p95): " + ", ".join(
        f"{name} {stage_p50[f'{name}_p50_s'] or 0:.1f}/{stage_p50[f'{name}_p95_s'] or 0:.1f} s"
        for name in ("stream", "publish", "load")) + " (sent → ingest commit → merge → queryable)")
    print(f"all events      : p50 {results['all_events']['p50_s']:.1f} s, p95 {results['all_events']['p95_s']:.1f} s "
          "(with the ramp and the tail)")
    print(f"run queues      : largest {results['max_queue_depth']} (per job {dict(max_depth)}; target ≤ 2)")
    print(f"drain           : {results['drain_s']:.0f} s from the simulator's end to every event queryable (target ≤ 60 s)")
    if args.soak:
        print_soak(results["soak"])
    for job, figures in jobs.items():
        print(f"  {job:<24} {figures['runs']:>4} runs  duration p50 {figures['duration_p50_s'] or 0:5.1f} s "
              f"max {figures['duration_max_s'] or 0:5.1f} s  queue wait p50 {figures['queue_wait_p50_s'] or 0:5.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
