"""Both encodings on one topic, end to end on the real stack: the same simulated run written once in
JSON and once in Avro (same seed, two run ids) into one topic, with a bad record of each encoding,
reaches lakeFS main and ClickHouse exactly once; the warehouse holds the same events, sessions and
energy for both runs, reconciliation passes, and ``lake_quarantine`` shows both bad records by
reason with their raw bytes escaped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import dagster as dg
import pytest

from evcharging.definitions import defs
from evcharging.defs.lake.sensors import ingest_commits
from evcharging.resources.from_settings import lakefs_resource
from evcharging.settings import PROJECT_DIR
from evcharging_tests.integration.test_end_to_end import e2e  # noqa: F401 (the fixture)
from evcharging_tests.integration.test_end_to_end import _checks, _run_sensor_requests, load_reference_and_topics
from simulator.avro import wire_header
from simulator.events import RunManifest

pytestmark = pytest.mark.integration

BAD = {b'{"event_id": "cut': "not a JSON object", wire_header(77) + b"\x02ab": "unknown Avro schema id 77"}


def _simulate(settings, tmp_path, encoding: str) -> RunManifest:
    manifest = tmp_path / f"{encoding}.manifest.json"
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "--vehicles", "200", "--duration", "2", "--start", "2026-01-05T07:00:00+00:00",
         "--seed", "42", "--run-id", f"enc-{encoding}", "--progress-interval", "120", "--encoding", encoding,
         "--sink", "kafka", "--manifest", str(manifest), "--quiet"],
        cwd=PROJECT_DIR, env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return RunManifest.from_json(manifest.read_text())


async def _produce_bad(settings) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for value in BAD:
            await producer.send_and_wait(settings.kafka_events_topic, value=value, key=b"bad")
    finally:
        await producer.stop()


def _per_run(settings) -> dict[str, dict]:
    """Per run: (event type, events, distinct ids, energy) rows, and (sessions, energy) of its sessions."""
    from evcharging.resources.from_settings import warehouse_resource

    db = settings.clickhouse_database
    with warehouse_resource(settings).connect() as wh:
        events = wh.query_rows(f"SELECT run_id, event_type, count(), uniqExact(event_id), round(sum(energy_kwh), 6) "
                               f"FROM {db}.fact_charging_events FINAL GROUP BY run_id, event_type ORDER BY 1, 2")
        sessions = wh.query_rows(f"SELECT run_id, count(), round(sum(energy_kwh), 6) FROM {db}.fact_charging_sessions "
                                 f"FINAL GROUP BY run_id")
    runs: dict[str, dict] = {}
    for run_id, *row in events:
        runs.setdefault(run_id, {"events": [], "sessions": None})["events"].append(tuple(row))
    for run_id, *row in sessions:
        runs.setdefault(run_id, {"events": [], "sessions": None})["sessions"] = tuple(row)
    return runs


def test_json_and_avro_runs_on_one_topic_reach_clickhouse_alike(e2e, tmp_path):  # noqa: F811 (the fixture)
    settings = e2e
    instance = dg.DagsterInstance.ephemeral()
    definitions = defs()
    load_reference_and_topics(definitions, instance, settings)

    manifests = {encoding: _simulate(settings, tmp_path, encoding) for encoding in ("json", "avro")}
    asyncio.run(_produce_bad(settings))
    assert manifests["json"].counts == manifests["avro"].counts and manifests["json"].sessions_completed > 10
    stream = subprocess.run([sys.executable, "-m", "evcharging.streaming", "--available-now",
                             "--max-offsets-per-trigger", "3000"], cwd=PROJECT_DIR, env=os.environ.copy(),
                            capture_output=True, text=True, timeout=600)
    assert stream.returncode == 0, stream.stderr[-3000:]

    _, publish_runs = _run_sensor_requests(ingest_commits, instance, settings, None)
    assert publish_runs and all(run.success for run in publish_runs)
    for job in ("refresh_sessions", "reconcile_warehouse"):
        follow_up = definitions.resolve_job_def(job).execute_in_process(instance=instance)
        assert follow_up.success, job
    reconciliation = _checks([follow_up])["reconciliation"]
    assert reconciliation.passed, reconciliation.description

    per_run = _per_run(settings)
    assert set(per_run) == {"enc-json", "enc-avro"}
    assert per_run["enc-json"] == per_run["enc-avro"]  # the same events, sessions and energy, whatever the encoding
    events = per_run["enc-avro"]["events"]
    assert per_run["enc-avro"]["sessions"][0] == manifests["avro"].sessions_completed
    assert {t: n for t, n, *_ in events} == {k: v for k, v in manifests["avro"].counts.items() if v}
    assert all(n == distinct for _, n, distinct, _ in events), "an event id landed twice"

    quarantine = definitions.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("lake_quarantine")}).execute_in_process(instance=instance)
    meta = quarantine.asset_materializations_for_node("lake_quarantine")[0].metadata
    assert meta["dagster/row_count"].value == len(BAD)
    by_reason = {r.data["reason"]: r.data["rows"] for r in meta["rows_by_reason"].value.records}
    assert by_reason == {reason: 1 for reason in BAD.values()}
    previews = {r.data["value"] for r in meta["examples"].value.records}
    assert any(p.startswith("\\x00\\x00\\x00\\x00M") for p in previews), previews  # Avro's header, escaped
    assert lakefs_resource(settings).repo().branch("main").get_commit().id
