"""Write-audit-publish on the real lakeFS and MongoDB, in a scratch repository of the test's own.

A good batch is merged and its rows appear on main; a batch with an unknown station id or a broken
schema is not merged and the failing check names the reason; events re-sent after they reached
main are dropped as exact copies and their batch still publishes; re-running a merged partition
changes nothing (the sensors are tested in test_sensor_coalescing).
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evcharging.defs.lake.assets import ingest_batch, lake_main
from evcharging.defs.lake.partitions import ingest_batches
from evcharging.lake.ingest import event_ids_on_main
from evcharging.reference.datasets import STATIONS, VEHICLES
from evcharging.reference.store import store_reference
from evcharging.resources.from_settings import drop_repository, scratch_repository
from evcharging.resources.mongo import MongoResource
from evcharging.streaming.batches import META, IngestBatchWriter, branch_name, commit_metadata, tag_name
from evcharging_tests.factories import session_events

pytestmark = pytest.mark.integration


@pytest.fixture
def lake(stack_settings):
    """A lakeFS repository of the test's own: tests never merge into the developer's repository, nor
    into each other's (their hand-made sessions reuse names like "s1", which the audit would see as
    the same readings (session_id, seq) with other content)."""
    lakefs = scratch_repository(stack_settings, f"wap-{datetime.now():%H%M%S%f}")
    yield lakefs
    drop_repository(stack_settings, lakefs)


@pytest.fixture(scope="module")
def reference(stack_settings):
    """A MongoDB database of its own with synthetic stations and vehicles: (resource, station ids, model ids)."""
    database = f"wap_{datetime.now():%H%M%S%f}"
    mongo = MongoResource(url=stack_settings.mongo_url, database=database)

    async def load():
        async with mongo.open_database() as db:
            await store_reference(db, STATIONS, STATIONS.prepare(None, seed=1, rows=20))
            await store_reference(db, VEHICLES, VEHICLES.prepare(None, seed=1, rows=10))
            ids = [sorted(d["_id"] for d in await db[c].find({}, {"_id": 1}).to_list())
                   for c in (STATIONS.collection, VEHICLES.collection)]
            return ids

    station_ids, model_ids = asyncio.run(load())
    yield mongo, station_ids, model_ids

    async def drop():
        client = mongo.client()
        await client.drop_database(database)
        await client.close()

    asyncio.run(drop())


def write_batch(spark, lakefs, stream: str, batch_id: int, values: list[bytes], first_offset: int = 0):
    """``values`` as Kafka records of one partition, written by the stream's own batch writer."""
    from datetime import datetime as dt

    rows = [(b"k", v, "wap-topic", 0, first_offset + i, dt(2026, 1, 5)) for i, v in enumerate(values)]
    records = spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset long, "
                                          "timestamp timestamp")
    return IngestBatchWriter(lakefs, stream, "wap-topic").write(records, batch_id)


def materialize_batch(lakefs, mongo, key: str, instance, run_config: dict | None = None):
    """Audit and publish one ingest partition as Dagster runs it."""
    instance.add_dynamic_partitions(ingest_batches.name, [key])
    # A failing blocking check fails the step (so the run shows red in the UI): don't raise here.
    return dg.materialize([ingest_batch], partition_key=key, instance=instance, raise_on_error=False,
                          resources={"lakefs": lakefs, "mongo": mongo}, run_config=run_config)


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_good_batch_is_merged_bad_batches_are_not(spark, lake, reference, unique_name, monkeypatch):
    mongo, stations, models = reference
    lakefs = lake
    repo = lakefs.repo()
    instance = dg.DagsterInstance.ephemeral()
    stream, run = f"w{unique_name}", f"run-{unique_name}"
    good_events = (session_events(run, "s1", station_id=stations[0], vehicle_model_id=models[0])
                   + session_events(run, "s2", station_id=stations[1], vehicle_model_id=models[1]))

    # A good batch: every check passes, the branch is merged into main and deleted.
    write_batch(spark, lakefs, stream, 0, good_events)
    good = branch_name(stream, 0)
    result = materialize_batch(lakefs, mongo, good, instance)
    assert result.success
    assert {name: e.passed for name, e in _checks(result).items()} == dict.fromkeys(_checks(result), True)
    assert not [b for b in repo.branches(prefix=good)]
    ids = {json.loads(v)["event_id"] for v in good_events}
    assert ids <= event_ids_on_main(lakefs, ["2026-01-05"])
    merge = repo.branch("main").get_commit()
    assert merge.metadata[f"{META}ingest_branch"] == good and merge.metadata[f"{META}batch_id"] == "0"

    # Re-running the merged partition is a no-op: main does not move.
    again = materialize_batch(lakefs, mongo, good, instance)
    assert repo.branch("main").get_commit().id == merge.id
    assert again.asset_materializations_for_node("ingest_batch")[0].metadata["status"].value == "already merged"

    # Unknown station id → not merged, the branch stays, the check says which id.
    write_batch(spark, lakefs, stream, 1, session_events(run, "s3", station_id="EVS99999", vehicle_model_id=models[0]),
                 first_offset=10)
    blocked = materialize_batch(lakefs, mongo, branch_name(stream, 1), instance)
    assert not blocked.success
    unknown = _checks(blocked)["reference_ids_exist"]
    assert not unknown.passed and "EVS99999" in unknown.description
    assert [b.id for b in repo.branches(prefix=branch_name(stream, 1))] == [branch_name(stream, 1)]
    audit = repo.branch(branch_name(stream, 1)).get_commit().metadata
    assert audit["evcharging.audit.status"] == "failed" and "EVS99999" in audit["evcharging.audit.reference_ids_exist"]

    # The same events again (new Kafka offsets) → exact copies of what main has: dropped, and the batch
    # still publishes (it has nothing else, so main gains no event).
    write_batch(spark, lakefs, stream, 2, good_events[:3], first_offset=20)
    resent = materialize_batch(lakefs, mongo, branch_name(stream, 2), instance)
    assert resent.success
    copies = _checks(resent)["no_event_already_on_main"]
    assert copies.passed and copies.metadata["duplicates_dropped"].value == 3
    assert ids == event_ids_on_main(lakefs, ["2026-01-05"])
    merge = repo.branch("main").get_commit()
    assert merge.metadata["evcharging.audit.duplicates_dropped"] == "3"

    # A writer that bypassed the stream's contract: power as text, SoC over 100.
    _rogue_batch(lakefs, stream, 3, stations[0], models[0])
    broken = _checks(materialize_batch(lakefs, mongo, branch_name(stream, 3), instance))["contract_schema"]
    assert not broken.passed and "power_kw" in broken.description
    assert repo.branch("main").get_commit().id == merge.id  # none of the bad batches reached main

    # lake_main records main's head as its data version, and the two blocked batches as unpublished.
    monkeypatch.setenv("EVCHARGING_STREAM_NAME", stream)
    snapshot = dg.materialize([lake_main], instance=instance, resources={"lakefs": lakefs})
    meta = snapshot.asset_materializations_for_node("lake_main")[0].metadata
    assert meta["lakefs_commit"].value == merge.id
    assert meta["unpublished_batches"].value == 2 and meta["oldest_unpublished_batch"].value == branch_name(stream, 1)
    assert meta["oldest_unpublished_age_s"].value >= 0


def _rogue_batch(lakefs, stream: str, batch_id: int, station: str, model: str) -> None:
    event = json.loads(session_events("rogue", "r1", station_id=station, vehicle_model_id=model, n=1)[0])
    table = pa.table({**{k: [v] for k, v in event.items()}, "power_kw": ["eleven"], "soc_pct": [140.0],
                      "kafka_partition": [0], "kafka_offset": [99]})
    table = table.set_column(table.schema.get_field_index("event_time"), "event_time",
                             pa.array([datetime(2026, 1, 5, 8)], pa.timestamp("ms", tz="UTC")))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    repo = lakefs.repo()
    branch = repo.branch(branch_name(stream, batch_id)).create(source_reference="main")
    branch.object("events/event_date=2026-01-05/part-rogue.parquet").upload(data=buffer.getvalue(), mode="wb")
    commit = branch.commit(message="rogue", metadata=commit_metadata(stream, batch_id, "wap-topic", {"0": [99, 100]},
                                                                     1, 0, ["2026-01-05"]))
    repo.tag(tag_name(stream, batch_id)).create(commit.get_commit().id)


def test_cli_materializes_a_partition(spark, lake, reference, unique_name, tmp_path):
    """`dagster asset materialize --partition` audits and publishes one ingest batch from the shell."""
    import os
    import subprocess
    import sys

    from evcharging.settings import PROJECT_DIR

    mongo, stations, models = reference
    lakefs, stream = lake, f"c{unique_name}"
    write_batch(spark, lakefs, stream, 0,
                 session_events(f"run-{unique_name}", "s1", station_id=stations[2], vehicle_model_id=models[2]))
    key = branch_name(stream, 0)
    (tmp_path / "dagster.yaml").write_text((PROJECT_DIR / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "EVCHARGING_MONGO_DATABASE": mongo.database,
           "EVCHARGING_LAKEFS_REPOSITORY": lake.repository}
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.add_dynamic_partitions(ingest_batches.name, [key])
    result = subprocess.run([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "evcharging.definitions",
                             "--select", "ingest_batch", "--partition", key], cwd=PROJECT_DIR, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "RUN_SUCCESS" in result.stdout + result.stderr
    assert lake.repo().branch("main").get_commit().metadata[f"{META}ingest_branch"] == key
