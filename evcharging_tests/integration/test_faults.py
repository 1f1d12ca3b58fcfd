"""Faults of a real stream, waited out: nothing lost, nothing doubled — service by service.

One stream process runs for the whole test on a topic, lakeFS repository, MongoDB database and
chDB of the test's own, with Dagster publishing (the commit sensor and its publish runs, in
process) throughout. lakeFS, MinIO, Kafka and FerretDB are killed in turn with SIGKILL in the
middle of a batch and restarted with the stack's own start code; the stream is never restarted by
hand. Each service's fault has a simulated run of its own (its own run id and manifest), so its
figures — events sent, on main, in ClickHouse, copies dropped, rows rescued — are measured and
reconciled separately. Events arrive at least once (part of each run is sent twice) and part of
each run comes from a producer on a newer contract with an extra field.

MinIO, Kafka and FerretDB are killed while a batch is being written and come back within seconds,
as a restart does: the clients' own retries absorb that (S3A: ``fs.s3a.retry.limit`` 7 from 500 ms,
exponential with ±50 % jitter, so 32–95 s; the Kafka client reconnects for up to
``default.api.timeout.ms``, 60 s; pymongo's server selection, 30 s, and the steps' retry policy).
lakeFS is killed while the stream waits for its next trigger, its run's events arrive during the
outage, and it stays down for LAKEFS_OUTAGE_S, longer than the SDK's budget by far and than most of
S3A's: the batch fails at its first lakeFS call (the SDK's urllib3 retries three times without delay, well under a second),
so the stream's own path must run — one log line per attempt with growing delays, no exit, and the
query restarted from its checkpoint once lakeFS is back, the failed batch replayed and written once.

The per-service table is printed and written to ``bench/results/faults.json`` (git-ignored) and to
the test's tmp folder.
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
from collections import Counter

import dagster as dg
import pytest

from evcharging.definitions import defs
from evcharging.defs.lake.sensors import ingest_commits
from evcharging.transient import is_transient, looks_like_connection_error
from evcharging.resources.from_settings import drop_repository, lakefs_resource, resources, scratch_repository
from evcharging.settings import PROJECT_DIR, load_settings
from evcharging.stack import stack
from evcharging.stack.stack import service
from evcharging.streaming.batches import META, TAG_PREFIX, branch_name
from evcharging.warehouse.tables import markdown_table
from evcharging_tests.factories import session_events
from evcharging_tests.integration.test_stream import _end_offsets, _produce_topic
from evcharging_tests.integration.test_wap import reference  # noqa: F401
from simulator.events import RunManifest

pytestmark = pytest.mark.integration

LAKEFS_OUTAGE_S = 75  # longer than the clients' retries (see above): the stream's own wait path must run
# Seconds down before the restart, in this order: lakeFS's outage hits a stream that already
# published a run, never one still starting.
FAULTS = {"minio": 8, "lakefs": LAKEFS_OUTAGE_S, "kafka": 8, "ferretdb": 8}
SESSIONS, EVENTS_PER_SESSION = 40, 15  # a run of 600 events per fault
NEWER_SESSIONS = 10  # of which these come from a producer on the next contract version (one field more)
RESENT = 75  # and this many of its events are sent a second time (a producer's retry storm)
DATE = "2026-01-05"


@pytest.fixture
def isolated(stack_settings, reference, unique_name, tmp_path, monkeypatch):  # noqa: F811
    """Settings (and process environment) of a pipeline of the test's own on the shared stack."""
    mongo, stations, models = reference
    lakefs = scratch_repository(stack_settings, f"faults-{unique_name}")
    env = {"EVCHARGING_KAFKA_EVENTS_TOPIC": f"faults-{unique_name}",
           "EVCHARGING_KAFKA_MANIFESTS_TOPIC": f"faults-manifests-{unique_name}",
           "EVCHARGING_LAKEFS_REPOSITORY": lakefs.repository,
           "EVCHARGING_MONGO_DATABASE": mongo.database, "EVCHARGING_STREAM_NAME": f"f{unique_name}",
           "EVCHARGING_CHDB_PATH": str(tmp_path / "chdb"), "EVCHARGING_SPARK_CHECKPOINT_DIR": str(tmp_path / "cp"),
           "EVCHARGING_STREAM_TRIGGER_SECONDS": "2", "EVCHARGING_STREAM_MAX_OFFSETS_PER_TRIGGER": "400"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    asyncio.run(resources(settings)["kafka"].ensure_topics())
    yield settings, stations, models
    drop_repository(stack_settings, lakefs)


def _run_records(run: str, stations: list[str], models: list[str], hour: int) -> list[tuple[bytes, bytes]]:
    """One simulated run: SESSIONS sessions, the first NEWER_SESSIONS on the next contract version."""
    records = []
    for s in range(SESSIONS):
        session = f"{run}-s{s:03d}"
        events = session_events(run, session, station_id=stations[s % len(stations)], vehicle_model_id=models[s % len(models)],
                                n=EVENTS_PER_SESSION, start_ms=1767600000000 + hour * 3_600_000 + s * 1000)
        if s < NEWER_SESSIONS:
            events = [json.dumps({**json.loads(e), "contract_version": 2, "firmware": "2.1.0"}).encode() for e in events]
        records += [(session.encode(), e) for e in events]
    return records


def _manifest(run: str, records: list[tuple[bytes, bytes]], last_offsets: dict[str, int]) -> RunManifest:
    """What the producer says it emitted (each event once), as the simulator publishes it."""
    events = {json.loads(v)["event_id"]: json.loads(v) for _, v in records}
    counts = Counter(e["event_type"] for e in events.values())
    return RunManifest(run_id=run, seed=0, counts=dict(counts), events_total=len(events),
                       sessions_started=counts["session_started"], sessions_completed=counts["session_ended"],
                       sink="kafka", kafka_last_offsets=last_offsets)


async def _publish_manifest(settings, manifest: RunManifest) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(settings.kafka_manifests_topic, manifest.to_json().encode(),
                                     key=manifest.run_id.encode())
    finally:
        await producer.stop()


def _kill_group(pid: int) -> None:
    """SIGKILL a process and its children (a stack service or a stream, started in a session of its own)."""
    os.killpg(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)  # this test process may have started it: reap it, or it would look alive
    except ChildProcessError:
        pass


def _kill_then_restart(settings, name: str, outage_s: float, log: dict) -> threading.Thread:
    """SIGKILL service ``name`` now; start it again after ``outage_s`` with the stack's own code.
    ``log[name]`` gets how long it was unreachable (until the stack found it healthy)."""
    proc = service(settings, name).process(settings)
    pid = proc.pid()
    assert pid, f"{name} is not running"
    _kill_group(pid)
    killed = time.monotonic()

    def restart():
        time.sleep(outage_s)
        stack.up(settings, progress=lambda msg: None)
        log[name] = round(time.monotonic() - killed, 1)

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    return thread


class Publisher:
    """The commit sensor and its publish runs, as the daemon would run them (in process)."""

    def __init__(self, settings):
        self.settings, self.instance, self.cursor = settings, dg.DagsterInstance.ephemeral(), None
        self.job = defs().resolve_job_def("publish_ingest_batches")
        self.failed_runs: list[str] = []  # the error of each publish run that failed
        self.sensor_errors: list[str] = []  # each tick that raised (the daemon logs it and ticks again)

    def tick(self) -> None:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                          resources={"lakefs": lakefs_resource(self.settings)})
        try:
            result = ingest_commits(context)
        except Exception as exc:  # a service is down: only a transient error may be waited out
            assert is_transient(exc), f"the commit sensor failed for good: {exc!r}"
            self.sensor_errors.append(f"{type(exc).__name__}: {exc}")
            return
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for request in result.run_requests:
            run = self.job.execute_in_process(instance=self.instance, partition_key=request.partition_key,
                                              tags=request.tags, raise_on_error=False)
            if not run.success:
                failures = [e.event_specific_data.error.message for e in run.all_events
                            if e.is_step_failure and e.event_specific_data and e.event_specific_data.error]
                self.failed_runs.append("; ".join(failures) or "the run failed outside its steps")
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
        assert stream.poll() is None, f"the stream exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no batch in flight after {timeout:.0f} s:\n{log.read_text()[-3000:]}"
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


def _merges(settings) -> dict[str, dict]:
    """Main's merge commits of ingest batches: id → metadata."""
    repo = lakefs_resource(settings).repo()
    return {c.id: c.metadata for c in repo.branch("main").log() if f"{META}ingest_branch" in (c.metadata or {})}


def test_each_service_killed_mid_stream_loses_nothing_and_doubles_nothing(isolated, tmp_path):
    settings, stations, models = isolated
    publisher = Publisher(settings)
    log = tmp_path / "stream.log"
    with open(log, "wb") as out:
        stream = subprocess.Popen([sys.executable, "-m", "evcharging.streaming"], cwd=PROJECT_DIR, env=os.environ.copy(),
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    produced, outages, batch, figures, manifests = 0, {}, -1, {}, {}
    try:
        for hour, (name, outage_s) in enumerate(FAULTS.items()):
            run = f"faults-{settings.stream_name}-{name}"
            records = _run_records(run, stations, models, hour)
            sent = records + records[:RESENT]
            merged_before, log_before = set(_merges(settings)), len(log.read_text())
            between_batches = name == "lakefs"  # killed first: the next batch fails at once, in the SDK
            if between_batches:
                restarter = _kill_then_restart(settings, name, outage_s, outages)
            before = _end_offsets(settings.kafka_bootstrap_servers, settings.kafka_events_topic)
            asyncio.run(_produce_topic(settings.kafka_bootstrap_servers, settings.kafka_events_topic, sent, 4))
            after = _end_offsets(settings.kafka_bootstrap_servers, settings.kafka_events_topic)
            produced += len(sent)
            if not between_batches:
                publisher.tick()
                batch = _wait_for_batch_in_flight(settings, stream, log, after=batch)  # a batch of its run
                restarter = _kill_then_restart(settings, name, outage_s, outages)
            while restarter.is_alive():  # Dagster keeps publishing through the outage
                publisher.tick()
                time.sleep(1)
            assert stream.poll() is None, f"the stream exited during the {name} outage:\n{log.read_text()[-3000:]}"
            _publish_until(publisher, settings, produced, timeout=300)
            lines = log.read_text()[log_before:]
            merges = [m for c, m in _merges(settings).items() if c not in merged_before]
            manifests[name] = _manifest(run, records, {p: end - 1 for p, end in after.items() if end > before.get(p, 0)})
            asyncio.run(_publish_manifest(settings, manifests[name]))
            figures[name] = {"run_id": run, "outage_s": outages[name], "events_sent": len(sent),
                             "stream_waits": lines.count("is unreachable (attempt"),
                             "stream_restarts": lines.count("restarting from the checkpoint"),
                             "duplicates_dropped": sum(int(m.get("evcharging.audit.duplicates_dropped", 0)) for m in merges)}
        assert stream.poll() is None, "the stream was never restarted by hand, and never had to be"
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(120)
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]

    # The warehouse as the sensors would bring it up to date, then the product's reconciliation.
    definitions = defs()
    for job in ("refresh_lake_main", "refresh_sessions", "reconcile_warehouse"):
        result = definitions.resolve_job_def(job).execute_in_process(instance=publisher.instance, raise_on_error=False)
        assert result.success, job
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "reconciliation"]
    for name, row in figures.items():
        row["events_on_main"], row["rows_rescued"] = _main_events(settings, row["run_id"])
        row["events_in_clickhouse"], row["distinct_in_clickhouse"] = _clickhouse_events(settings, row["run_id"])
    _report(figures, tmp_path)

    assert check.passed and check.metadata["runs_checked"].value == len(FAULTS), check.description
    # A publish run may fail only on a service that was down (its retries outlasted), never for another
    # reason; the batches it left were published by a later run (the counts above).
    for error in publisher.failed_runs:
        assert looks_like_connection_error(error) or "503" in error or "502" in error, error
    print(f"\npublish runs failed during outages: {len(publisher.failed_runs)}; sensor ticks that raised: "
          f"{len(publisher.sensor_errors)}")
    for name, row in figures.items():
        unique = manifests[name].events_total
        assert row["events_on_main"] == unique == SESSIONS * EVENTS_PER_SESSION, (name, row)
        assert row["events_in_clickhouse"] == row["distinct_in_clickhouse"] == unique, (name, row)
        assert row["duplicates_dropped"] == RESENT and row["events_sent"] == unique + RESENT, (name, row)
        assert row["rows_rescued"] == NEWER_SESSIONS * EVENTS_PER_SESSION, (name, row)
    # lakeFS was down for longer than its clients retry: the stream waited on its own, one line per
    # attempt with growing delays, and restarted its query from the checkpoint.
    assert figures["lakefs"]["outage_s"] >= LAKEFS_OUTAGE_S
    assert figures["lakefs"]["stream_waits"] >= 5 and figures["lakefs"]["stream_restarts"] >= 1, output[-3000:]
    assert "(at start)" not in output and "stream: resumed after" in output, output[-3000:]


def _report(figures: dict[str, dict], tmp_path) -> None:
    """The per-service table: printed, and saved as JSON beside the benchmarks' results."""
    columns = ["service killed", "outage s", "events sent", "events on main", "events in ClickHouse",
               "duplicates dropped", "rows rescued", "stream waits (own path)"]
    rows = [[name, r["outage_s"], r["events_sent"], r["events_on_main"], r["events_in_clickhouse"], r["duplicates_dropped"],
             r["rows_rescued"], r["stream_waits"]] for name, r in figures.items()]
    print("\n" + markdown_table(columns, rows))
    text = json.dumps({"faults": figures}, indent=2)
    (tmp_path / "faults.json").write_text(text)
    results = PROJECT_DIR / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "faults.json").write_text(text)


def _main_events(settings, run: str) -> tuple[int, int]:
    """(events of ``run`` on main, of which with rescued fields); asserts each event id is there once."""
    from evcharging.lake.ingest import read_events
    from evcharging.lake.main_ids import main_files

    lakefs = lakefs_resource(settings)
    head = lakefs.repo().branch("main").get_commit().id
    paths = [f.path.split("/", 2)[2] for f in main_files(lakefs, head, {DATE})]
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
