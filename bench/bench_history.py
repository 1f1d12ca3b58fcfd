"""Every recurring step on an aged instance: its time at empty, a quarter and full history.

History is SYNTHESIZED (the output says so): events inserted into the warehouse from ``numbers()``
in the fact's own layout, with the records the loads and sessions passes keep (``load_log``,
``load_counts``, ``session_log``, ``session_counts``, the sessions and the marts), published batches
in lakeFS (their ``ingested-…`` tags) with their Dagster partitions, and finished runs in a SQLite
Dagster instance. What is measured on top of it is real: at each age, new loads of fresh Parquet
files committed to lakeFS main go through the product's own functions in the order a publish run,
a sessions pass (Spark), a reconcile run, the sensors and the retention pass take them.

The ratio printed per step is its time at that age over its time on the empty instance (median of
``--loads`` new loads each); the target is ≤ 1.25× or +1 s. The full audit (``warehouse_stage``,
a person's job) and the old ``count() FINAL`` are printed beside them as comparisons: they read the
whole warehouse, by design.

    python bench/bench_history.py --events 250000000 --batches 20000 --runs 20000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

from evcharging.contracts import FIELDS, LAKE_EVENTS_PATH, RESCUED_COLUMN  # noqa: E402
from evcharging.defs.lake.jobs import LANE  # noqa: E402
from evcharging.defs.lake.partitions import ingest_batches  # noqa: E402
from evcharging.defs.lake.sensors import PublishCursor, ingest_commits, main_commits, sessions_behind_events  # noqa: E402
from evcharging.defs.retention.jobs import prune_runs  # noqa: E402
from evcharging.lake.ingest import arrow_filesystem  # noqa: E402
from evcharging.lake.retention import prune_published_tags  # noqa: E402
from evcharging.resources.from_settings import drop_repository, scratch_repository  # noqa: E402
from evcharging.resources.spark import build_spark_session  # noqa: E402
from evcharging.resources.warehouse import WarehouseResource  # noqa: E402
from evcharging.settings import load_settings  # noqa: E402
from evcharging.streaming.batches import tag_name  # noqa: E402
from evcharging.warehouse import load as wload  # noqa: E402
from evcharging.warehouse.dimensions import extend_dim_time  # noqa: E402
from evcharging.warehouse.freshness import warehouse_lag  # noqa: E402
from evcharging.warehouse.marts import MARTS, rebuild_mart, refresh_mart_from_sessions  # noqa: E402
from evcharging.warehouse.reconcile import warehouse_stage  # noqa: E402
from evcharging.warehouse.reconcile_state import reconcile_since_last  # noqa: E402
from evcharging.warehouse.schema import ensure_tables, qualified  # noqa: E402
from evcharging.warehouse.tables import stored_rows, table_preview  # noqa: E402

DB = "history"
T0 = datetime(2026, 3, 2, tzinfo=UTC)  # the new loads' day; history lies on the days before it
PER_SESSION = 20
STATIONS = 5000


# --- synthesized history (labelled) ------------------------------------------------------------------

def age_warehouse(wh, start: int, stop: int, batches: tuple[int, int], days: float) -> None:
    """Events ``start``…``stop`` of the history (event ``i`` is the i-th of the whole history, which
    spans ``days`` days before T0 at an even rate), loaded by batches ``batches`` (one load each)."""
    total_s = days * 86400
    events, loads = qualified(DB, "fact_charging_events"), batches[1] - batches[0]
    per_load = max(1, (stop - start) // max(loads, 1))
    step = 10_000_000
    for lo in range(start, stop, step):
        hi = min(stop, lo + step)
        # i counts backwards from T0: the newest history event is just before it.
        wh.command(f"""
INSERT INTO {events} (contract_version, event_id, event_type, run_id, session_id, seq, event_time, station_id,
    charger_id, vehicle_id, vehicle_model_id, connector_type, power_kw, energy_kwh, soc_pct, wait_s, end_reason,
    rescued_fields, kafka_partition, kafka_offset, load_commit)
SELECT 1, concat('h', toString(number)),
    multiIf(number % {PER_SESSION} = 0, 'session_started', number % {PER_SESSION} = {PER_SESSION - 1}, 'session_ended',
            'charging_progress'),
    'history', concat('hs', toString(intDiv(number, {PER_SESSION}))), number % {PER_SESSION},
    toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 3, 'UTC') - toIntervalMillisecond(
        toInt64(({STOP_ALL} - number) * {total_s * 1000 / STOP_ALL:.6f})),
    concat('EVS', leftPad(toString(intDiv(number, {PER_SESSION}) % {STATIONS} + 1), 5, '0')),
    'c', 'V1', 'tesla-model-3', 'CCS', 11.0, (number % {PER_SESSION}) * 0.2, 20 + number % {PER_SESSION}, 0.0,
    if(number % {PER_SESSION} = {PER_SESSION - 1}, 'target_soc', NULL), NULL, toInt32(number % 4), number,
    concat('hist-', toString({batches[0]} + intDiv(number - {start}, {per_load})))
FROM numbers({lo}, {hi - lo})
SETTINGS max_insert_threads = 2""")
    sessions = qualified(DB, "fact_charging_sessions")
    wh.command(f"""
INSERT INTO {sessions} (session_id, run_id, station_id, charger_id, vehicle_id, vehicle_model_id, connector_type,
    start_time, end_time, duration_s, energy_kwh, avg_power_kw, peak_power_kw, start_soc_pct, end_soc_pct, end_reason,
    wait_s, queued_at, event_count, load_commit)
SELECT concat('hs', toString(s)), 'history', concat('EVS', leftPad(toString(s % {STATIONS} + 1), 5, '0')), 'c', 'V1',
    'tesla-model-3', 'CCS', start, start + toIntervalSecond({PER_SESSION * 60}), {PER_SESSION * 60}, 4.0, 11.0, 11.0,
    20, 40, 'target_soc', 0, start, {PER_SESSION}, 'hist'
FROM (SELECT number AS s, toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 3, 'UTC') - toIntervalMillisecond(
        toInt64(({STOP_ALL} - number * {PER_SESSION}) * {total_s * 1000 / STOP_ALL:.6f})) AS start
      FROM numbers({start // PER_SESSION}, {(stop - start) // PER_SESSION}))""")
    _age_logs(wh, start, stop, batches, per_load, days)


def _age_logs(wh, start: int, stop: int, batches: tuple[int, int], per_load: int, days: float) -> None:
    """One load_log / load_counts / session_log / session_counts row per synthesized load."""
    n = batches[1] - batches[0]
    first = f"toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 3, 'UTC') - toIntervalSecond({int(days * 86400)})"
    wh.command(f"""
INSERT INTO {qualified(DB, 'load_log')} (commit_id, previous_commit, files, events_read, events_loaded, sessions_loaded,
    loaded_at, batches, kafka_records, kafka_ranges, lake_events, quarantined, dropped, first_event_time, last_event_time)
SELECT concat('hist-', toString(number)), '', 4, {per_load}, {per_load}, 0,
    toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number), 1, {per_load}, '{{}}', {per_load}, 0, 0,
    {first}, {first}
FROM numbers({batches[0]}, {n})""")
    wh.command(f"""
INSERT INTO {qualified(DB, 'load_counts')}
SELECT concat('hist-', toString(number)), 'history', t, {per_load // 3}, {per_load // 3}, now64(3, 'UTC')
FROM numbers({batches[0]}, {n}) ARRAY JOIN ['session_started', 'charging_progress', 'session_ended'] AS t""")
    wh.command(f"""
INSERT INTO {qualified(DB, 'session_log')} (commit_id, sessions_loaded, sessionized_at, days)
SELECT concat('hist-', toString(number)), {per_load // PER_SESSION},
    toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number), []
FROM numbers({batches[0]}, {n})""")
    wh.command(f"""
INSERT INTO {qualified(DB, 'session_counts')}
SELECT concat('hist-', toString(number)), 'history', {per_load // PER_SESSION}, now64(3, 'UTC')
FROM numbers({batches[0]}, {n})""")


def settle(wh, timeout_s: float = 600) -> str:
    """Wait until ClickHouse has merged what the ageing inserted (in a pipeline that ran for months the
    merges kept pace; minutes after inserting 250 M rows at once they have not), at most ``timeout_s``."""
    started = time.monotonic()
    while wh.query_rows("SELECT count() FROM system.merges")[0][0] or \
            wh.query_rows("SELECT count() FROM system.mutations WHERE NOT is_done")[0][0]:
        if time.monotonic() - started > timeout_s:
            return f"still merging after {timeout_s:.0f} s (measured anyway)"
        time.sleep(5)
    return f"settled in {time.monotonic() - started:.0f} s"


def age_lake(lakefs, stream: str, batches: tuple[int, int]) -> None:
    """Published batches: their tags on main's first commit (no branch: merged and deleted)."""
    repo = lakefs.repo()
    base = next(iter(repo.ref("main").log(max_amount=1))).id

    def tag(b: int) -> None:
        repo.tag(tag_name(stream, b)).create(base)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(tag, range(*batches)))


def age_instance(instance: dg.DagsterInstance, stream: str, batches: tuple[int, int], runs: int) -> None:
    """Partitions of the batches, and ``runs`` finished publish runs."""
    instance.add_dynamic_partitions(ingest_batches.name, [f"ingest-{stream}-{b:010d}" for b in range(*batches)])
    for _ in range(runs):
        instance.add_run(dg.DagsterRun(job_name="publish_ingest_batches", run_id=str(uuid.uuid4()),
                                       status=dg.DagsterRunStatus.SUCCESS, tags={LANE: "events"}))


# --- a real new load ---------------------------------------------------------------------------------

def new_events(n: int, first_ms: int, tag: str):
    """``n`` lake rows (Arrow): complete sessions of PER_SESSION events, one per 10 s window."""
    import numpy as np
    import pyarrow as pa

    i = np.arange(n)
    seq = i % PER_SESSION
    session = i // PER_SESSION
    times = first_ms + session * 7 + seq * 500  # a session's events 0.5 s apart, all within the load
    kinds = np.where(seq == 0, "session_started", np.where(seq == PER_SESSION - 1, "session_ended", "charging_progress"))
    values = {
        "contract_version": pa.array(np.ones(n, np.int64)), "event_id": pa.array([f"{tag}-{k}" for k in i]),
        "event_type": pa.array(kinds), "run_id": pa.array(["fresh"] * n),
        "session_id": pa.array([f"{tag}-s{k}" for k in session]), "seq": pa.array(seq.astype(np.int64)),
        "event_time": pa.array(times * 1000, pa.timestamp("us", "UTC")),
        "station_id": pa.array([f"EVS{k % STATIONS + 1:05d}" for k in session]), "charger_id": pa.array(["c"] * n),
        "vehicle_id": pa.array(["V1"] * n), "vehicle_model_id": pa.array(["tesla-model-3"] * n),
        "connector_type": pa.array(["CCS"] * n), "power_kw": pa.array(np.full(n, 11.0)),
        "energy_kwh": pa.array(seq * 0.2), "soc_pct": pa.array(20.0 + seq), "wait_s": pa.array(np.zeros(n)),
        "end_reason": pa.array(np.where(seq == PER_SESSION - 1, "target_soc", None)),
    }
    columns = {f.name: values.get(f.name, pa.nulls(n, pa.string())) for f in FIELDS}
    columns |= {RESCUED_COLUMN: pa.nulls(n, pa.string()), "kafka_partition": pa.array((i % 4).astype(np.int32)),
                "kafka_offset": pa.array(i.astype(np.int64))}
    return pa.table(columns)


def commit_new_load(lakefs, n: int, first_ms: int) -> str:
    import pyarrow.parquet as pq

    tag = uuid.uuid4().hex[:8]
    day = datetime.fromtimestamp(first_ms / 1000, UTC).date()
    path = f"{LAKE_EVENTS_PATH}/event_date={day}/part-{tag}.parquet"
    pq.write_table(new_events(n, first_ms, tag), f"{lakefs.repository}/main/{path}", filesystem=arrow_filesystem(lakefs))
    return lakefs.repo().branch("main").commit(message=f"bench: new load {tag}").get_commit().id


def timed(figures: dict, name: str, fn):
    started = time.perf_counter()
    result = fn()
    figures[name].append(time.perf_counter() - started)
    return result


def recurring_steps(wh, lakefs, spark, instance, stream: str, n: int, first_ms: int, newest_tag: str) -> dict:
    """One new load through every recurring step; each step's seconds."""
    figures: dict[str, list[float]] = defaultdict(list)
    commit = commit_new_load(lakefs, n, first_ms)
    report = timed(figures, "publish: load the new files", lambda: wload.load_lake_commit(wh, DB, None, lakefs, commit))
    assert report.events_loaded == n, report
    timed(figures, "publish: metadata (totals, lag, parts)", lambda: (
        wload.loaded_totals(wh, DB), warehouse_lag(wh, DB, lakefs, commit), stored_rows(wh, DB, "fact_charging_events")))
    timed(figures, "publish: extend dim_time", lambda: extend_dim_time(wh, DB))
    events = timed(figures, "sessions: read ended sessions' events", lambda: wload.session_events(wh, DB, [commit]))
    assert events.num_rows == n, events.num_rows
    sessions = timed(figures, "sessions: Spark summarise", lambda: wload.summarise_sessions(spark, events, commit))

    def write():
        wh.insert_arrow(qualified(DB, "fact_charging_sessions"), sessions)
        wload.record_session_counts(wh, DB, commit, sessions)
        wload.record_sessionized(wh, DB, [commit], sessions.num_rows, wload.session_days(sessions))
        wload.close_sessions(wh, DB, events["session_id"])

    timed(figures, "sessions: write, record, close", write)
    timed(figures, "sessions: metadata", lambda: (stored_rows(wh, DB, "fact_charging_sessions"), table_preview(
        wh, DB, "fact_charging_sessions", "end_time DESC", where=f"start_time >= (SELECT max(start_time) FROM "
        f"{qualified(DB, 'fact_charging_sessions')}) - INTERVAL 1 HOUR")))
    for mart in MARTS:
        timed(figures, f"marts: {mart}", lambda m=mart: refresh_mart_from_sessions(wh, DB, m))
    # What the reconcile job runs: the loads since the last reconciliation, from recorded counts.
    timed(figures, "reconcile (since the last one)", lambda: reconcile_since_last(wh, DB, {}, "t"))
    context = dg.build_sensor_context(instance=instance, cursor=PublishCursor(seen=newest_tag).dump(),
                                      resources={"lakefs": lakefs})
    timed(figures, "sensor: ingest_commits tick", lambda: ingest_commits(context))
    timed(figures, "sensor: main_commits tick", lambda: main_commits(
        dg.build_sensor_context(instance=instance, resources={"lakefs": lakefs})))
    timed(figures, "sensor: sessions_behind_events tick", lambda: sessions_behind_events(
        dg.build_sensor_context(instance=instance)))
    timed(figures, "retention pass (nothing due)", lambda: (
        prune_published_tags(lakefs, stream, older_than_s=7 * 86400),
        prune_runs(instance, datetime.now(UTC) - timedelta(days=3), [])))
    return figures


COMPARISONS = ("full audit (warehouse_stage, by hand)", "count() FINAL (the old row count)")


def comparisons(wh) -> dict:
    figures: dict[str, list[float]] = defaultdict(list)
    timed(figures, COMPARISONS[0], lambda: warehouse_stage(wh, DB))
    timed(figures, COMPARISONS[1], lambda: wh.query_rows(f"SELECT count() FROM {qualified(DB, 'fact_charging_events')} FINAL"))
    return figures


STOP_ALL = 0  # the whole history's size (events), set in main


def main() -> None:
    global STOP_ALL
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=250_000_000, help="warehouse events at full history")
    parser.add_argument("--batches", type=int, default=20_000, help="published batches at full history")
    parser.add_argument("--runs", type=int, default=20_000, help="finished Dagster runs at full history")
    parser.add_argument("--days", type=float, default=20, help="days the full history spans, before the new loads")
    parser.add_argument("--new-events", type=int, default=100_000, help="events per new load (10 s at 10k/s)")
    parser.add_argument("--loads", type=int, default=3, help="new loads measured per age (median)")
    args = parser.parse_args()
    STOP_ALL = args.events

    run = uuid.uuid4().hex[:8]
    stream = f"hist{run}"
    os.environ["EVCHARGING_STREAM_NAME"] = stream  # the sensors read it from the settings
    settings = load_settings()
    tmp = Path(tempfile.mkdtemp(prefix="bench-history-"))
    lakefs = scratch_repository(settings, f"history-{run}")
    lakefs.repo().branch("main").commit(message="bench: base", allow_empty=True)
    spark = build_spark_session(settings, "bench-history")
    spark.sparkContext.setLogLevel("ERROR")
    (tmp / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp / "dagster"))  # SQLite, as `dagster dev` locally
    warehouse = WarehouseResource(chdb_path=str(tmp / "chdb"), database=DB)
    ages = {"empty": 0.0, "quarter": 0.25, "full": 1.0}
    results: dict[str, dict] = {}
    say = lambda m: print(f"· {m}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        with warehouse.connect() as wh:  # a warm-up load, not counted: Spark's JIT, chDB's first queries
            ensure_tables(wh, DB)
            recurring_steps(wh, lakefs, spark, instance, stream, args.new_events,
                            int((T0 - timedelta(hours=1)).timestamp() * 1000), None)
        done = (0, 0, 0)  # events, batches, runs synthesized so far (oldest history last: it is older)
        for index, (age, share) in enumerate(ages.items()):
            target = (int(args.events * share), int(args.batches * share), int(args.runs * share))
            started = time.perf_counter()
            with warehouse.connect() as wh:
                ensure_tables(wh, DB)
                if target[0] > done[0]:  # the newest history first: event i counts back from T0
                    age_warehouse(wh, args.events - target[0], args.events - done[0],
                                  (args.batches - target[1], args.batches - done[1]), args.days)
                    for mart in MARTS:
                        rebuild_mart(wh, DB, mart)
                    extend_dim_time(wh, DB)
                    say(f"{age}: merges of the synthesized history {settle(wh)}")
            age_lake(lakefs, stream, (args.batches - target[1], args.batches - done[1]))
            age_instance(instance, stream, (args.batches - target[1], args.batches - done[1]), target[2] - done[2])
            done = target
            say(f"{age}: SYNTHESIZED history of {target[0]:,} events, {target[1]:,} published batches, "
                f"{target[2]:,} runs in {time.perf_counter() - started:.0f} s")
            figures: dict[str, list[float]] = defaultdict(list)
            newest = tag_name(stream, args.batches - 1) if target[1] else None
            for k in range(args.loads):
                first_ms = int((T0 + timedelta(hours=index * 2, minutes=k)).timestamp() * 1000)
                with warehouse.connect() as wh:
                    for name, secs in recurring_steps(wh, lakefs, spark, instance, stream, args.new_events,
                                                      first_ms, newest).items():
                        figures[name] += secs
            with warehouse.connect() as wh:
                for name, secs in comparisons(wh).items():
                    figures[name] += secs
            results[age] = {name: statistics.median(secs) for name, secs in figures.items()}
            say(f"{age}: measured {args.loads} new loads of {args.new_events:,} events")
    finally:
        drop_repository(settings, lakefs)
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, args)


def report(results: dict[str, dict], args) -> None:
    base = results["empty"]
    lines = [f"recurring steps on an aged instance (history SYNTHESIZED: {args.events:,} events, {args.batches:,} "
             f"published batches, {args.runs:,} runs at full; new loads of {args.new_events:,} real events)",
             f"{'step':48} {'empty s':>9} {'quarter s':>10} {'full s':>9} {'full/empty':>11}  within 1.25x or +1 s"]
    ok = True
    for name in base:
        e, q, f = (results[a][name] for a in ("empty", "quarter", "full"))
        comparison = name in COMPARISONS
        within = f <= max(1.25 * e, e + 1)
        ok &= within or comparison
        verdict = "(comparison: reads everything)" if comparison else ("yes" if within else "NO")
        lines.append(f"{name:48} {e:9.3f} {q:10.3f} {f:9.3f} {f / e if e else float('inf'):10.2f}x  {verdict}")
    print("\n".join(lines))
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "history.json").write_text(json.dumps({"args": vars(args), "seconds": results, "all_within": ok}, indent=2))


if __name__ == "__main__":
    main()
