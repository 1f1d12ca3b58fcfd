"""Faults of a real stream, waited out: nothing lost, nothing doubled.

One stream process runs for the whole test on a topic, lakeFS repository, MongoDB database and
chDB of the test's own, with Dagster publishing (the commit sensor and its publish runs, in
process) throughout. lakeFS, MinIO, Kafka and FerretDB are each killed with SIGKILL in the middle
of it and restarted a few seconds later with the stack's own start code; the stream is never
restarted by hand. Events arrive at least once: part of the run is sent twice, and part of it by
a producer on a newer contract with an extra field. At the end main and ClickHouse hold every
event exactly once; the copies were dropped and counted, the extra field rescued.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest

from evcharging.definitions import defs
from evcharging.defs.lake.sensors import ingest_commits
from evcharging.resources.from_settings import drop_repository, lakefs_resource, scratch_repository
from evcharging.settings import PROJECT_DIR, load_settings
from evcharging.stack import stack
from evcharging.stack.services import service
from evcharging.streaming.batches import META, TAG_PREFIX, branch_name
from evcharging_tests.factories import session_events
from evcharging_tests.integration.test_stream import _produce_topic
from evcharging_tests.integration.test_wap import reference  # noqa: F401

pytestmark = pytest.mark.integration

FAULTS = ("lakefs", "minio", "kafka", "ferretdb")  # killed in this order, one outage each
OUTAGE_S = 8
SESSIONS_PER_WAVE, EVENTS_PER_SESSION = 40, 15  # 600 events a wave, one wave before each fault and one after


@pytest.fixture
def isolated(stack_settings, reference, unique_name, tmp_path, monkeypatch):  # noqa: F811
    """Settings (and process environment) of a pipeline of the test's own on the shared stack."""
    mongo, stations, models = reference
    lakefs = scratch_repository(stack_settings, f"faults-{unique_name}")
    env = {"EVCHARGING_KAFKA_EVENTS_TOPIC": f"faults-{unique_name}", "EVCHARGING_LAKEFS_REPOSITORY": lakefs.repository,
           "EVCHARGING_MONGO_DATABASE": mongo.database, "EVCHARGING_STREAM_NAME": f"f{unique_name}",
           "EVCHARGING_CHDB_PATH": str(tmp_path / "chdb"), "EVCHARGING_SPARK_CHECKPOINT_DIR": str(tmp_path / "cp"),
           "EVCHARGING_STREAM_TRIGGER_SECONDS": "2", "EVCHARGING_STREAM_MAX_OFFSETS_PER_TRIGGER": "400"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield load_settings(), stations, models
    drop_repository(stack_settings, lakefs)


def _wave(run: str, wave: int, stations: list[str], models: list[str], newer: bool = False) -> list[tuple[bytes, bytes]]:
    records = []
    for s in range(SESSIONS_PER_WAVE):
        session = f"{run}-w{wave}-s{s:03d}"
        events = session_events(run, session, station_id=stations[s % len(stations)], vehicle_model_id=models[s % len(models)],
                                n=EVENTS_PER_SESSION, start_ms=1767600000000 + wave * 3_600_000 + s * 1000)
        if newer:  # a producer on the next contract version: one more field
            events = [json.dumps({**json.loads(e), "contract_version": 2, "firmware": "2.1.0"}).encode() for e in events]
        records += [(session.encode(), e) for e in events]
    return records


def _kill_then_restart(settings, name: str, outage_s: float, log: list) -> threading.Thread:
    """SIGKILL service ``name`` now; start it again after ``outage_s`` with the stack's own code."""
    proc = service(name).process(settings)
    pid = proc.pid()
    assert pid, f"{name} is not running"
    os.killpg(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)  # the test session may have started it: reap it, or it would look alive
    except ChildProcessError:
        pass
    killed = time.monotonic()

    def restart():
        time.sleep(outage_s)
        stack.up(settings, progress=lambda msg: None)
        log.append((name, round(time.monotonic() - killed, 1)))

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    return thread


class Publisher:
    """The commit sensor and its publish runs, as the daemon would run them (in process)."""

    def __init__(self, settings):
        self.settings, self.instance, self.cursor = settings, dg.DagsterInstance.ephemeral(), None
        self.job = defs().resolve_job_def("publish_ingest_batches")
        self.failed_runs = 0

    def tick(self) -> None:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                          resources={"lakefs": lakefs_resource(self.settings)})
        try:
            result = ingest_commits(context)
        except Exception:  # lakeFS is down: the daemon would log it and tick again
            return
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for request in result.run_requests:
            run = self.job.execute_in_process(instance=self.instance, partition_key=request.partition_key,
                                              tags=request.tags, raise_on_error=False)
            self.failed_runs += not run.success
        self.cursor = result.cursor


def _stream_position(settings) -> tuple[int, int, int]:
    """(records the stream committed, batches, batches merged into main) of the isolated stream."""
    repo = lakefs_resource(settings).repo()
    tags = list(repo.tags(prefix=f"{TAG_PREFIX}{settings.stream_name}-"))
    metas = [t.get_commit().metadata for t in tags]
    records = sum(hi - lo for m in metas for lo, hi in json.loads(m[f"{META}kafka_offsets"]).values())
    open_branches = len(list(repo.branches(prefix=f"ingest-{settings.stream_name}-")))
    return records, len(tags), len(tags) - open_branches


def _wait_for_batch_in_flight(settings, stream, log, after: int, timeout: float = 180) -> int:
    """Until the stream is writing a batch later than ``after`` (its branch exists, its commit does
    not yet); returns its id."""
    repo = lakefs_resource(settings).repo()
    deadline = time.monotonic() + timeout
    while True:
        batch = max(_stream_position(settings)[1], after + 1)  # batches so far = the id of the next one
        if list(repo.branches(prefix=branch_name(settings.stream_name, batch))):
            return batch
        assert stream.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)


def _publish_until(publisher: Publisher, settings, produced: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.tick()
        records, batches, merged = _stream_position(settings)
        if records == produced and merged == batches:
            return
        time.sleep(2)
    raise AssertionError(f"not caught up in {timeout:.0f} s: {_stream_position(settings)} of {produced} records")


def test_service_outages_lose_nothing_and_double_nothing(isolated, tmp_path):
    settings, stations, models = isolated
    run = f"faults-{settings.stream_name}"
    publisher = Publisher(settings)
    log = tmp_path / "stream.log"
    with open(log, "wb") as out:
        stream = subprocess.Popen([sys.executable, "-m", "evcharging.streaming"], cwd=PROJECT_DIR, env=os.environ.copy(),
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    produced, unique, outages, batch = 0, set(), [], -1
    try:
        waves = [_wave(run, i, stations, models, newer=(i == 2)) for i in range(len(FAULTS) + 1)]
        resent = waves[0][: len(waves[0]) // 4]  # a quarter of the first wave is produced again (a retry storm)
        for i, name in enumerate(FAULTS):
            records = waves[i] + (resent if name == "kafka" else [])
            asyncio.run(_produce_topic(settings.kafka_bootstrap_servers, settings.kafka_events_topic, records, 4))
            produced += len(records)
            unique |= {json.loads(v)["event_id"] for _, v in records}
            publisher.tick()
            batch = _wait_for_batch_in_flight(settings, stream, log, after=batch)  # each fault hits another batch
            restarter = _kill_then_restart(settings, name, OUTAGE_S, outages)
            while restarter.is_alive():  # Dagster keeps publishing through the outage
                publisher.tick()
                time.sleep(1)
            assert stream.poll() is None, f"the stream exited during the {name} outage:\n{log.read_text()[-3000:]}"
        asyncio.run(_produce_topic(settings.kafka_bootstrap_servers, settings.kafka_events_topic, waves[-1], 4))
        produced += len(waves[-1])
        unique |= {json.loads(v)["event_id"] for _, v in waves[-1]}
        _publish_until(publisher, settings, produced, timeout=300)
        assert stream.poll() is None, "the stream was never restarted by hand, and never had to be"
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(120)
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    waits = output.count("is unreachable (attempt")  # what the clients' own retries did not absorb

    # The warehouse refresh, as the main-commit sensor launches it, then the counts of every stage.
    refresh = defs().resolve_job_def("refresh_lake_main").execute_in_process(instance=publisher.instance)
    assert refresh.success
    on_main, rescued = _main_events(settings, run)
    in_clickhouse, distinct = _clickhouse_events(settings, run)
    dropped = _merged_metadata_sum(settings, "evcharging.audit.duplicates_dropped")
    summary = {"outages_s": outages, "stream_waits": waits, "produced": produced, "unique": len(unique), "on_main": on_main,
               "clickhouse": in_clickhouse, "duplicates_dropped": dropped, "rescued": rescued}
    print(f"\nfault injection: {json.dumps(summary)}")
    assert [name for name, _ in outages] == list(FAULTS)
    assert on_main == len(unique) and in_clickhouse == distinct == len(unique), summary
    assert dropped == len(resent) and rescued == len(waves[2]), summary


def _main_events(settings, run: str) -> tuple[int, int]:
    from evcharging.lake.ingest import read_events
    from evcharging.lake.main_ids import main_files

    lakefs = lakefs_resource(settings)
    head = lakefs.repo().branch("main").get_commit().id
    dates = {"2026-01-05"}
    paths = [f.path.split("/", 2)[2] for f in main_files(lakefs, head, dates)]
    events = read_events(lakefs, head, paths, columns=["event_id", "run_id", "rescued_fields"])
    events = events[events["run_id"] == run]
    assert events["event_id"].is_unique
    return len(events), int(events["rescued_fields"].notna().sum())


def _clickhouse_events(settings, run: str) -> tuple[int, int]:
    from evcharging.resources.from_settings import warehouse_resource

    db = settings.clickhouse_database
    with warehouse_resource(settings).connect() as wh:
        [(rows, distinct)] = wh.query_rows(f"SELECT count(), uniqExact(event_id) FROM {db}.fact_charging_events "
                                           f"WHERE run_id = '{run}'")  # no FINAL: a doubled row would show
    return int(rows), int(distinct)


def _merged_metadata_sum(settings, key: str) -> int:
    """``key`` summed over main's merge commits of ingest batches (not the batches' own commits)."""
    repo = lakefs_resource(settings).repo()
    merges = [c.metadata or {} for c in repo.branch("main").log()]
    return sum(int(m.get(key, 0)) for m in merges if f"{META}ingest_branch" in m)
