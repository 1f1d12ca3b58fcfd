"""`evcharging demo`: the whole pipeline on the local stack, ending in ClickHouse and the Dagster UI.

1. the stack is up; the reference assets load stations and vehicles into MongoDB and the
   dimensions into ClickHouse (materialized on the project's Dagster instance, so the UI shows them);
2. the simulator emits a small simulated day to Kafka and publishes its run manifest;
3. the stream drains the topic into lakeFS ingest branches (``--available-now``);
4. `dagster dev` (started before the simulator) audits and merges each ingest branch through its
   sensors, and each publish run then refreshes lake_main and the warehouse's events; the demo
   waits until ClickHouse holds every event of the run and says how long that took after the
   simulator finished;
5. a short summary is read from the warehouse, and `dagster dev` keeps serving until Ctrl-C (which
   stops it, and any run in flight, within 20 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from evcharging.dagster_dev import DagsterDev
from evcharging.settings import PROJECT_DIR, Settings
from simulator.events import RunManifest

Say = Callable[[str], None]


class DemoError(RuntimeError):
    pass


def _run(argv: list[str], what: str, say: Say, timeout: float, env: dict | None = None) -> None:
    say(f"{what}: {' '.join(argv[1:4])} …")
    started = time.monotonic()
    try:
        result = subprocess.run(argv, cwd=PROJECT_DIR, env=env or os.environ.copy(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DemoError(f"{what} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        raise DemoError(f"{what} failed (exit {result.returncode}); see the output above")
    say(f"{what}: done in {time.monotonic() - started:.0f} s")


def load_reference(settings: Settings, say: Say) -> None:
    """Materialize the MongoDB reference assets and the ClickHouse dimensions built from them."""
    import dagster as dg

    from evcharging.defs.reference.assets import stations, vehicles
    from evcharging.defs.warehouse.assets import dim_stations, dim_vehicles
    from evcharging.definitions import defs

    say("reference data: MongoDB stations and vehicles, ClickHouse dimensions …")
    with dg.DagsterInstance.get() as instance:  # the instance `dagster dev` serves: the UI shows these runs
        result = dg.materialize([stations, vehicles, dim_stations, dim_vehicles], instance=instance,
                                resources=defs().resources, raise_on_error=False)
    if not result.success:
        raise DemoError("loading the reference data failed; open the run in the Dagster UI for details")


def simulate(settings: Settings, manifest: Path, vehicles: int, hours: float, seed: int, say: Say) -> RunManifest:
    # From 06:00: the morning demand peak, rather than a quiet night.
    _run([sys.executable, "-m", "simulator", "--vehicles", str(vehicles), "--duration", str(hours),
          "--start", "2026-01-05T06:00:00+00:00", "--seed", str(seed), "--sink", "kafka", "--manifest", str(manifest)],
         "simulator", say, timeout=1800)
    return RunManifest.from_json(manifest.read_text())


def stream(settings: Settings, say: Say) -> None:
    _run([sys.executable, "-m", "evcharging.streaming", "--available-now"], "stream", say, timeout=1800)


def warehouse_events(settings: Settings, run_id: str) -> int:
    """Events of ``run_id`` in ClickHouse (waits for chDB's lock while a step holds it: a count takes ms)."""
    from evcharging.resources.from_settings import warehouse_resource

    with warehouse_resource(settings).connect() as wh:
        rows = wh.query_rows(f"SELECT count() FROM {settings.clickhouse_database}.fact_charging_events FINAL "
                             f"WHERE run_id = '{run_id}'")
    return int(rows[0][0])


def pipeline_settled(settings: Settings) -> tuple[bool, str]:
    """Whether every ingest batch is on main and the warehouse has loaded main's head, with no run
    active that writes events (publish, refresh; a sessions pass may run: it does not change them).

    Asked of lakeFS and the Dagster instance, never of chDB: opening chDB here could take its lock
    from under a Dagster step.
    """
    import dagster as dg

    from evcharging.defs.lake import jobs
    from evcharging.defs.lake.sensors import RUNNING, WAITING, data_version, runs_in
    from evcharging.defs.warehouse.assets import FACT_EVENTS
    from evcharging.lake.ingest import AUDIT, branch_for_tag, is_merged
    from evcharging.resources.from_settings import lakefs_resource
    from evcharging.streaming.batches import TAG_PREFIX

    lakefs = lakefs_resource(settings)
    repo = lakefs.repo()
    pending = [t.id for t in repo.tags(prefix=f"{TAG_PREFIX}{settings.stream_name}-") if not is_merged(lakefs, t.get_commit().id)]
    for tag in pending:
        audit = repo.branch(branch_for_tag(tag)).get_commit().metadata or {}
        if audit.get(f"{AUDIT}status") == "failed":
            reasons = "; ".join(f"{k.removeprefix(AUDIT)}: {v}" for k, v in audit.items() if k != f"{AUDIT}status")
            raise DemoError(f"{branch_for_tag(tag)} failed its audit and was not merged — {reasons}")
    if pending:
        return False, f"{len(pending)} ingest batches not yet on main (e.g. {pending[0]})"
    head = repo.branch(lakefs.default_branch).get_commit().id
    with dg.DagsterInstance.get() as instance:
        active = sum(runs_in(instance, job.name, WAITING + RUNNING) for job in (jobs.publish_ingest_batches,
                                                                                 jobs.refresh_lake_main))
        loaded = data_version(instance, FACT_EVENTS)
    if loaded != head or active:
        return False, f"warehouse at {str(loaded)[:12]}, main at {head[:12]}, {active} publish/refresh runs active"
    return True, f"warehouse loaded main {head[:12]}"


def summary(settings: Settings, run_id: str) -> str:
    from evcharging.resources.from_settings import warehouse_resource

    db = settings.clickhouse_database
    with warehouse_resource(settings).connect() as wh:
        sessions, energy, avg_min, peak = wh.query_rows(
            f"SELECT count(), round(sum(energy_kwh), 1), round(avg(duration_s) / 60, 1), round(max(peak_power_kw), 1) "
            f"FROM {db}.fact_charging_sessions FINAL WHERE run_id = '{run_id}'")[0]
        busiest = wh.query_rows(
            f"SELECT s.station_id, any(d.city), count() AS n, round(sum(s.energy_kwh), 1) "
            f"FROM {db}.fact_charging_sessions AS s FINAL LEFT JOIN {db}.dim_stations AS d FINAL "
            f"ON d.station_id = s.station_id WHERE s.run_id = '{run_id}' "
            f"GROUP BY s.station_id ORDER BY n DESC, s.station_id LIMIT 5")
    lines = [f"run {run_id}: {sessions} completed sessions, {energy} kWh, {avg_min} min average, peak {peak} kW",
             "busiest stations:"]
    lines += [f"  {station:<10} {city or '?':<16} {n:>4} sessions {kwh:>8} kWh" for station, city, n, kwh in busiest]
    return "\n".join(lines)


def wait_until_loaded(settings: Settings, dev: DagsterDev, manifest: RunManifest, simulator_done: float, say: Say,
                      timeout: float = 1800) -> None:
    """Wait until `dagster dev`'s sensors have published and loaded the whole run into ClickHouse;
    say how long that took from the simulator's end."""
    expected = sum(manifest.counts.values())
    say(f"waiting for {expected:,} events of run {manifest.run_id} in ClickHouse (up to {timeout / 60:.0f} min) …")
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        if dev.proc.poll() is not None:
            raise DemoError(f"dagster dev exited (code {dev.proc.returncode}); see {dev.log_file}")
        time.sleep(2)
        settled, state = pipeline_settled(settings)
        if state != last:
            say(state)
            last = state
        if settled:
            queryable_after = time.time() - simulator_done
            count = warehouse_events(settings, manifest.run_id)  # waits for chDB if a sessions pass holds it
            if count != expected:
                raise DemoError(f"the warehouse holds {count:,} events of run {manifest.run_id}, the simulator "
                                f"emitted {expected:,}: see the reconciliation check in the UI")
            say(f"warehouse: all {count:,} events of run {manifest.run_id}, queryable "
                f"{queryable_after:.0f} s after the simulator finished")
            wait_for_sessions(dev, say, deadline)
            return
    raise DemoError(f"the pipeline did not settle within {timeout:.0f} s ({last}); see the runs in the UI")


def wait_for_sessions(dev: DagsterDev, say: Say, deadline: float) -> None:
    """Wait until the sessions lane (Spark: every 3 minutes while events arrive, a minute after they
    settle) has caught up with the events."""
    import dagster as dg

    from evcharging.defs.lake.sensors import data_version
    from evcharging.defs.warehouse.assets import FACT_EVENTS, FACT_SESSIONS

    say("waiting for the sessions and marts (Spark, in their own lane, a minute after the events settle) …")
    while time.monotonic() < deadline:
        if dev.proc.poll() is not None:
            raise DemoError(f"dagster dev exited (code {dev.proc.returncode}); see {dev.log_file}")
        with dg.DagsterInstance.get() as instance:
            events_at, sessions_at = data_version(instance, FACT_EVENTS), data_version(instance, FACT_SESSIONS)
        if events_at and events_at == sessions_at:
            return
        time.sleep(3)
    raise DemoError("the sessions did not catch up with the events in time; see the runs in the UI")


def run_demo(settings: Settings, say: Say, vehicles: int, hours: float, seed: int | None) -> int:
    seed = seed if seed is not None else int(time.time()) % 1_000_000  # a new run each time: ids never clash
    dev = DagsterDev(settings, urlparse(settings.dagster_url).port or 3000,
                     log_file=settings.logs_dir / "dagster-dev.log")  # its run logs are many: the demo's lines stay readable
    os.environ["DAGSTER_HOME"] = dev.env["DAGSTER_HOME"]  # the reference runs go to the instance the UI shows
    load_reference(settings, say)
    # `dagster dev` first: its sensors publish and load each batch while the simulator and the stream still work.
    dev.start(say)
    say(f"dagster dev: http://127.0.0.1:{dev.port} (log {dev.log_file}) — its sensors audit, merge and load")
    try:
        manifest_path = settings.data_dir / "runs" / f"seed-{seed}.manifest.json"
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        manifest = simulate(settings, manifest_path, vehicles, hours, seed, say)
        simulator_done = time.time()
        stream(settings, say)
        wait_until_loaded(settings, dev, manifest, simulator_done, say)
    except BaseException:  # a failure or Ctrl-C: nothing of `dagster dev` is left running
        dev.stop(say)
        raise
    print(summary(settings, manifest.run_id), flush=True)
    say("your own SQL: evcharging sql \"SELECT … FROM evcharging.fact_charging_sessions FINAL\" "
        "(it waits while a load holds the warehouse); Ctrl-C stops the UI, `evcharging stack down` the services")
    # SIGTERM was once found ignored in this process at this point (SigIgn in /proc/<pid>/status),
    # which left the demo serving; the cause was not found. Installing the handler again here makes
    # SIGTERM stop the demo as Ctrl-C does, whatever changed it.
    from evcharging.cli import sigterm_as_interrupt

    sigterm_as_interrupt()
    try:
        return dev.wait()
    except KeyboardInterrupt:
        dev.stop(say)
        return 130
