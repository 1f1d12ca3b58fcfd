"""End to end on the real stack: simulator → Kafka → stream → ingest branches → audit → merge →
Spark transform → ClickHouse, reconciled exactly against the simulator's manifest.

The stream is killed with SIGKILL in the middle of the run and restarted, and the warehouse is
refreshed twice; every event and every completed session still arrives exactly once. Once Kafka
has deleted the run's records (as retention would), reconciliation still passes; when one event
goes missing from the warehouse behind the loads' back, the recurring reconciliation (recorded
counts) cannot see it, and the full audit a person runs fails naming the run. The run uses
its own topics, lakeFS repository, MongoDB database, stream name and chDB directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from evcharging.definitions import defs
from evcharging.defs.lake.sensors import ingest_commits, main_commits
from evcharging.lake.ingest import branch_for_tag
from evcharging.resources.from_settings import lakefs_resource, resources
from evcharging.settings import PROJECT_DIR, load_settings
from evcharging.streaming.batches import TAG_PREFIX
from evcharging_tests.stream_crash import kill_mid_batch_then_finish
from simulator.events import RunManifest

pytestmark = pytest.mark.integration


@pytest.fixture
def e2e(stack_settings, unique_name, tmp_path, monkeypatch):
    """Settings (and process environment) of an isolated pipeline on the shared stack."""
    env = {
        "EVCHARGING_KAFKA_EVENTS_TOPIC": f"e2e-events-{unique_name}",
        "EVCHARGING_KAFKA_MANIFESTS_TOPIC": f"e2e-manifests-{unique_name}",
        "EVCHARGING_LAKEFS_REPOSITORY": f"e2e-{unique_name}",
        "EVCHARGING_MONGO_DATABASE": f"e2e_{unique_name}",
        "EVCHARGING_STREAM_NAME": f"e2e{unique_name}",
        "EVCHARGING_CHDB_PATH": str(tmp_path / "chdb"),
        "EVCHARGING_SPARK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    lakefs_resource(settings).ensure_repository(f"s3://{settings.minio_bucket}/{settings.lakefs_repository}")
    return settings


def _simulate(settings, tmp_path) -> RunManifest:
    manifest = tmp_path / "run.manifest.json"
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "--vehicles", "400", "--duration", "3", "--start", "2026-01-05T07:00:00+00:00",
         "--seed", "42", "--progress-interval", "120", "--sink", "kafka", "--manifest", str(manifest), "--quiet"],
        cwd=PROJECT_DIR, env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return RunManifest.from_json(manifest.read_text())


def _run_sensor_requests(sensor, instance, settings, cursor):
    """Evaluate a sensor as the daemon would and execute its run requests in process, in order."""
    definitions = defs()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lakefs": lakefs_resource(settings)})
    result = sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    job = definitions.resolve_job_def(sensor.job_name)
    runs = [job.execute_in_process(instance=instance, partition_key=r.partition_key, tags=r.tags, raise_on_error=False)
            for r in result.run_requests]
    return result.cursor, runs


def _checks(runs) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for run in runs for e in run.get_asset_check_evaluations()}


def _warehouse_counts(settings, run_id: str) -> tuple[dict[str, int], int, int]:
    from evcharging.resources.from_settings import warehouse_resource

    db = settings.clickhouse_database
    with warehouse_resource(settings).connect() as wh:
        per_type = dict(wh.query_rows(f"SELECT event_type, count() FROM {db}.fact_charging_events FINAL "
                                      f"WHERE run_id = '{run_id}' GROUP BY event_type"))
        distinct = wh.query_rows(f"SELECT uniqExact(event_id) FROM {db}.fact_charging_events FINAL WHERE run_id = '{run_id}'")
        sessions = wh.query_rows(f"SELECT count() FROM {db}.fact_charging_sessions FINAL WHERE run_id = '{run_id}'")
    return {k: int(v) for k, v in per_type.items()}, int(distinct[0][0]), int(sessions[0][0])


def load_reference_and_topics(definitions, instance, settings) -> None:
    """Reference data in MongoDB and the dimensions in ClickHouse, through the assets; the topics."""
    import asyncio

    reference = definitions.resolve_implicit_global_asset_job_def().get_subset(asset_selection={
        dg.AssetKey(["mongodb", "stations"]), dg.AssetKey(["mongodb", "vehicles"]),
        dg.AssetKey(["clickhouse", "dim_stations"]), dg.AssetKey(["clickhouse", "dim_vehicles"])})
    assert reference.execute_in_process(instance=instance).success
    asyncio.run(resources(settings)["kafka"].ensure_topics())


def test_simulated_run_reaches_clickhouse_exactly_once(e2e, tmp_path):
    settings = e2e
    instance = dg.DagsterInstance.ephemeral()
    definitions = defs()

    load_reference_and_topics(definitions, instance, settings)
    manifest = _simulate(settings, tmp_path)
    assert manifest.sessions_completed > 20 and not manifest.interrupted
    total = sum(manifest.counts.values())
    kill_mid_batch_then_finish(lakefs_resource(settings).repo(), settings.stream_name,
                               ["--max-offsets-per-trigger", str(max(500, total // 6))])

    repo = lakefs_resource(settings).repo()
    tags = [t.id for t in repo.tags(prefix=f"{TAG_PREFIX}{settings.stream_name}-")]
    assert len(tags) >= 4
    cursor, publish_runs = _run_sensor_requests(ingest_commits, instance, settings, None)
    assert json.loads(cursor) == {"seen": tags[-1], "requested": branch_for_tag(tags[-1])}
    assert len(publish_runs) == 1  # one run for the range of batches
    assert all(run.success for run in publish_runs), [r.run_id for r in publish_runs if not r.success]
    assert not list(repo.branches(prefix=f"ingest-{settings.stream_name}-")), "every batch merged and cleaned up"

    # The publish run loaded main's head into the warehouse after its merges: no refresh is asked for.
    _, refresh_runs = _run_sensor_requests(main_commits, instance, settings, None)
    assert refresh_runs == []
    # A refresh on its own (what the main-commit sensor launches after a merge made by hand), twice:
    # nothing changes.
    for attempt in range(2):
        refresh = definitions.resolve_job_def("refresh_lake_main").execute_in_process(instance=instance)
        assert refresh.success, attempt
        for job in ("refresh_sessions", "reconcile_warehouse"):  # as their sensors start them, after the refresh
            follow_up = definitions.resolve_job_def(job).execute_in_process(instance=instance)
            assert follow_up.success, job
        reconciliation = _checks([follow_up])["reconciliation"]
        assert reconciliation.passed, reconciliation.description
        per_type, distinct, sessions = _warehouse_counts(settings, manifest.run_id)
        assert per_type == {k: v for k, v in manifest.counts.items() if v}, attempt
        assert distinct == total
        assert sessions == manifest.sessions_completed
    meta = reconciliation.metadata
    assert meta["runs_checked"].value >= 1 and meta["differences"].value == 0
    assert manifest.run_id in json.dumps(meta["runs"].value)

    # Retention deletes the run's events from Kafka: reconciliation works from recorded counts, so it
    # still passes — and still fails when one event goes missing from the warehouse.
    _delete_kafka_records(settings)
    assert _reconcile(definitions, instance).passed
    from evcharging.resources.from_settings import warehouse_resource

    with warehouse_resource(settings).connect() as wh:
        wh.command(f"DELETE FROM {settings.clickhouse_database}.fact_charging_events WHERE event_id = "
                   f"(SELECT min(event_id) FROM {settings.clickhouse_database}.fact_charging_events "
                   f"WHERE run_id = '{manifest.run_id}' AND event_type = 'charging_progress')")
    assert _reconcile(definitions, instance).passed  # the recorded counts did not change
    missing = _reconcile(definitions, instance, "audit_warehouse", "full_audit")
    assert not missing.passed and f"run {manifest.run_id}: warehouse charging_progress events" in missing.description


def _reconcile(definitions, instance, job: str = "reconcile_warehouse",
               check: str = "reconciliation") -> dg.AssetCheckEvaluation:
    result = definitions.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)
    return _checks([result])[check]


def _delete_kafka_records(settings) -> None:
    """What retention does to old segments: every record of the events topic so far is gone."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    async def delete():
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await consumer.start()
        await admin.start()
        try:
            partitions = [TopicPartition(settings.kafka_events_topic, p) for p in range(settings.kafka_events_partitions)]
            ends = await consumer.end_offsets(partitions)
            await admin.delete_records({tp: RecordsToDelete(before_offset=end) for tp, end in ends.items()})
            starts = await consumer.beginning_offsets(partitions)
            assert starts == ends, "the topic still holds records"
        finally:
            await admin.close()
            await consumer.stop()

    asyncio.run(delete())
