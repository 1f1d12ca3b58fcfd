"""Dagster runs really killed — SIGKILL of the run worker that `evcharging dev`'s daemon launched —
in the middle of a merge and in the middle of a warehouse load: the sensors ask for the work again
and the result is exact. Each event is once on main and once in ClickHouse, the copies are counted
once, ``load_log`` records each loaded commit once with every Kafka record accounted for, and no
killed run is left "in progress".

So that each kill lands where it hurts, the run worker holds at a crash point
(:mod:`evcharging.crashpoints`) until the test kills it: after the batch's copies were withdrawn
from its branch but before the merge; after the merge but before the branch is deleted; after
ClickHouse inserted a commit's events but before ``load_log`` records them. Everything is isolated:
a scratch lakeFS repository, stream name, MongoDB database and data directory (Dagster instance,
chDB).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import dagster as dg
import pytest

from evcharging.defs.lake.sensors import data_version
from evcharging.defs.warehouse.assets import FACT_EVENTS
from evcharging.lake.ingest import read_events
from evcharging.lake.main_ids import main_files
from evcharging.lake.pending import ingest_branches
from evcharging.resources.from_settings import drop_repository, scratch_repository, warehouse_resource
from evcharging.settings import load_settings
from evcharging.streaming.batches import META
from evcharging.warehouse.load import load_log
from evcharging.warehouse.reconcile import reconcile
from evcharging_tests.factories import session_events
from evcharging_tests.integration.dev import start_dev
from evcharging_tests.integration.test_dev_lanes_and_stop import _descendants, _runs, _wait
from evcharging_tests.integration.test_wap import reference, write_batch  # noqa: F401 — the fixture

pytestmark = pytest.mark.integration

PORT = 3392
POINTS = ("before_merge", "after_merge", "before_load_recorded")
FAILED = [dg.DagsterRunStatus.FAILURE]
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]
LANES = ("publish_ingest_batches", "refresh_lake_main")  # the jobs that merge and load


def _kill_at(holds, point: str, dev: subprocess.Popen, timeout: float = 300) -> int:
    """SIGKILL the run worker holding at ``point``; returns its pid."""
    pid_file = holds / f"{point}.pid"
    pid = int(_wait(lambda: pid_file.exists() and pid_file.read_text(), f"a run to reach {point}", timeout))
    assert pid in _descendants(dev.pid), f"pid {pid} at {point} is not a process `evcharging dev` started"
    assert pid != dev.pid
    os.kill(pid, signal.SIGKILL)
    return pid


def _merges(repo) -> list[dict]:
    """Metadata of main's merge commits of ingest batches."""
    return [c.metadata for c in repo.branch("main").log() if f"{META}ingest_branch" in (c.metadata or {})]


def _failed(home) -> int:
    """Runs of the publish and refresh lanes marked failed: the code server saw their processes die
    (they are not left "in progress")."""
    return sum(len(_runs(home, job, FAILED)) for job in LANES)


def test_runs_killed_mid_merge_and_mid_load_are_exact_after_the_sensors_rerun_them(
        stack_settings, spark, reference, tmp_path, unique_name):  # noqa: F811
    mongo, stations, models = reference
    lakefs = scratch_repository(stack_settings, f"kill-{unique_name}")
    stream, data_dir, holds = f"k{unique_name}", tmp_path / "data", tmp_path / "crashpoints"
    holds.mkdir()
    env = {**os.environ, "EVCHARGING_DATA_DIR": str(data_dir), "EVCHARGING_LAKEFS_REPOSITORY": lakefs.repository,
           "EVCHARGING_STREAM_NAME": stream, "EVCHARGING_MONGO_DATABASE": mongo.database,
           "EVCHARGING_DAGSTER_URL": f"http://127.0.0.1:{PORT}",
           "EVCHARGING_CRASHPOINTS": ",".join(POINTS), "EVCHARGING_CRASHPOINT_DIR": str(holds)}
    run = f"run-{unique_name}"
    s1 = session_events(run, "s1", station_id=stations[0], vehicle_model_id=models[0], n=20)
    s2 = session_events(run, "s2", station_id=stations[1], vehicle_model_id=models[1], n=15)
    # Batch 0 repeats 3 of its own events, batch 1 repeats 5 of batch 0's: both have copies to withdraw.
    write_batch(spark, lakefs, stream, 0, s1 + s1[:3])
    write_batch(spark, lakefs, stream, 1, s2 + s1[-5:], first_offset=100)
    expected = set(s1 + s2)

    dev_log = tmp_path / "dev.log"
    dev = start_dev(PORT, env, dev_log)
    home, repo = data_dir / "dagster_home", lakefs.repo()
    try:
        # The publish run holds after batch 0's copies left its branch, before the merge: killed.
        _kill_at(holds, "before_merge", dev)
        assert not _merges(repo), "nothing merged before the kill"
        _wait(lambda: _failed(home) == 1, "the killed publish run to be marked failed")
        # The sensor's next run merges batch 0 and holds before deleting its branch: killed.
        _kill_at(holds, "after_merge", dev)
        _wait(lambda: _failed(home) == 2, "the second killed publish run to be marked failed")
        # The next publish run finishes the publication and merges batch 1. The first load of
        # events (that run's own, or a refresh's) holds after ClickHouse inserted them, before
        # load_log records the load: killed.
        _kill_at(holds, "before_load_recorded", dev)
        _wait(lambda: _failed(home) == 3, "the run killed in its load to be marked failed")
        _wait(lambda: len(_merges(repo)) == 2 and not list(repo.branches(prefix=f"ingest-{stream}-")),
              "both batches to be merged and their branches deleted")
        assert not ingest_branches(lakefs, stream)
        head = repo.branch("main").get_commit().id
        # The refresh lane loads what no run loaded (after its back-off if the killed run was a refresh).
        with dg.DagsterInstance.from_config(str(home)) as instance:
            _wait(lambda: data_version(instance, FACT_EVENTS) == head, "a run to load main's head", 240)
        # A refresh the sensor queued meanwhile finds the head loaded; Ctrl-C stops a run in flight
        # (it fails), so stop only once the lanes are idle.
        _wait(lambda: not any(_runs(home, job, IN_FLIGHT) for job in LANES), "the lanes' queued runs to end", 120)
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
            dev.wait(timeout=60)
    output = dev_log.read_text()
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            statuses = sorted((r.job_name, r.status.value) for r in runs)
            # The three killed runs failed (the code server saw their processes die), and no other run did.
            assert [s for j, s in statuses if j in LANES].count("FAILURE") == 3, (statuses, _why_failed(instance))
        _assert_exact(lakefs, data_dir, run, expected, head)
    except AssertionError:
        print(output[-5000:])
        raise
    finally:
        drop_repository(stack_settings, lakefs)


def _why_failed(instance) -> list[tuple[str, str]]:
    """Each failed run's job and the messages of its failure events (a failed assertion names them)."""
    failures = (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ENGINE_EVENT)
    return [(r.job_name, " | ".join(str(e.message or e.dagster_event and e.dagster_event.message)[:300]
                                    for e in instance.all_logs(r.run_id) if e.dagster_event_type in failures))
            for r in instance.get_runs(dg.RunsFilter(statuses=FAILED))]


def _assert_exact(lakefs, data_dir, run: str, expected: set[bytes], head: str) -> None:
    ids = {json.loads(e)["event_id"] for e in expected}
    repo = lakefs.repo()
    paths = [f.path.split("/", 2)[2] for f in main_files(lakefs, head, {"2026-01-05"})]
    on_main = read_events(lakefs, head, paths, columns=["event_id", "run_id"])
    assert sorted(on_main["event_id"]) == sorted(ids), "each event once on main"
    merges = _merges(repo)
    assert sorted(int(m["evcharging.audit.duplicates_dropped"]) for m in merges) == [3, 5], merges

    settings = load_settings(data_dir=data_dir)
    db = settings.clickhouse_database
    with warehouse_resource(settings).connect() as wh:
        # No FINAL: a doubled row (a killed load repeated) must show, not collapse.
        [(rows, distinct)] = wh.query_rows(f"SELECT count(), uniqExact(event_id) FROM {db}.fact_charging_events "
                                           f"WHERE run_id = '{run}'")
        [(logged, commits)] = wh.query_rows(f"SELECT count(), uniqExact(commit_id) FROM {db}.load_log FINAL")
        loads = load_log(wh, db)
    assert rows == distinct == len(ids), (rows, distinct, len(ids))
    assert logged == commits and loads[-1].commit == head, [(l.commit, l.events_loaded) for l in loads]
    assert sum(l.events_loaded for l in loads) == len(ids) and sum(l.dropped for l in loads) == 8, loads
    checked = reconcile({}, {}, loads, "wap-topic")
    assert checked.passed, [str(d) for d in checked.differences]
