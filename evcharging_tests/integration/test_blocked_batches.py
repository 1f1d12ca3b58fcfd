"""A blocked batch has a way out, and copies of events never block one (scratch lakeFS repository).

* The operator path: a batch blocked by a station missing from MongoDB is merged once the station
  is added and its partition is materialized again.
* The explicit action: a batch with some offending rows is published without them when the
  partition is materialized with ``publish_without_offending_rows``; they move to quarantine with
  their reason, and the merge commit records the action.
* At-least-once input: exact copies (in the batch and of main's events) are dropped and counted,
  a conflicting copy is quarantined, a newer producer's extra field is rescued; the batch publishes.
"""

from __future__ import annotations

import asyncio
import json

import dagster as dg
import pytest

from evcharging.lake.ingest import event_ids_on_main
from evcharging.reference.datasets import STATIONS
from evcharging.streaming.batches import branch_name
from evcharging_tests.factories import session_events
from evcharging_tests.integration.test_wap import lake, materialize_batch, reference, write_batch  # noqa: F401

pytestmark = pytest.mark.integration


def _ids(events: list[bytes]) -> set[str]:
    return {json.loads(e)["event_id"] for e in events}


def _meta(result) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("ingest_batch")[0].metadata.items()}


def _quarantine(spark, lakefs, run: str) -> list:
    """The quarantined records of main that belong to simulator run ``run``."""
    rows = spark.read.parquet(lakefs.s3a_uri("main", "quarantine/events")).collect()
    return [r for r in rows if json.loads(bytes(r.value)).get("run_id") == run]


def test_operator_paths_for_a_blocked_batch(spark, lake, reference, unique_name):  # noqa: F811
    mongo, stations, models = reference
    repo, instance, stream, run = lake.repo(), dg.DagsterInstance.ephemeral(), f"b{unique_name}", f"run-{unique_name}"

    # Blocked by a station MongoDB does not have; fixed at the source; re-materialized → merged.
    missing = session_events(run, "s1", station_id="EVS77777", vehicle_model_id=models[0])
    write_batch(spark, lake, stream, 0, missing)
    assert not materialize_batch(lake, mongo, branch_name(stream, 0), instance).success

    async def add_station():
        async with mongo.open_database() as db:
            template = await db[STATIONS.collection].find_one({"_id": stations[0]})
            await db[STATIONS.collection].insert_one({**template, "_id": "EVS77777"})

    asyncio.run(add_station())
    again = materialize_batch(lake, mongo, branch_name(stream, 0), instance)
    assert again.success and _meta(again)["status"] == "merged"
    assert _ids(missing) <= event_ids_on_main(lake, ["2026-01-05"])

    # Some rows offend (unknown station): blocked, then published without them by the explicit action.
    good = session_events(run, "s2", station_id=stations[1], vehicle_model_id=models[1])
    bad = session_events(run, "s3", station_id="EVS99999", vehicle_model_id=models[1], start_ms=1767603600000)
    write_batch(spark, lake, stream, 1, good + bad, first_offset=100)
    assert not materialize_batch(lake, mongo, branch_name(stream, 1), instance).success
    action = {"ops": {"ingest_batch": {"config": {"publish_without_offending_rows": True}}}}
    published = materialize_batch(lake, mongo, branch_name(stream, 1), instance, run_config=action)
    assert published.success and _meta(published)["withdrawn_by_operator"] == len(bad)
    on_main = event_ids_on_main(lake, ["2026-01-05"])
    assert _ids(good) <= on_main and not _ids(bad) & on_main
    merge = repo.branch("main").get_commit()
    assert merge.metadata["evcharging.audit.action"] == "publish_without_offending_rows"
    assert merge.metadata["evcharging.audit.withdrawn_rows"] == str(len(bad))
    assert "without 5 offending rows" in merge.message
    quarantined = _quarantine(spark, lake, run)
    assert sorted(json.loads(bytes(r.value))["event_id"] for r in quarantined) == sorted(_ids(bad))
    assert {r.reason for r in quarantined} == {"reference_ids_exist: unknown station_id"}


def test_copies_are_dropped_conflicts_quarantined_and_new_fields_rescued(spark, lake, reference, unique_name):  # noqa: F811
    mongo, stations, models = reference
    repo, instance, stream, run = lake.repo(), dg.DagsterInstance.ephemeral(), f"c{unique_name}", f"run-{unique_name}"
    first = session_events(run, "s1", station_id=stations[0], vehicle_model_id=models[0])
    write_batch(spark, lake, stream, 0, first)
    assert materialize_batch(lake, mongo, branch_name(stream, 0), instance).success

    # The next batch: the first session's events again (2 of them twice), one of them changed, and a
    # new session from a newer producer with an extra field (long enough that the one conflict stays
    # under the quarantine share).
    changed = json.loads(first[4])
    changed["power_kw"] = 99.0
    newer = [json.dumps({**json.loads(e), "contract_version": 2, "firmware": "1.2.3"}).encode()
             for e in session_events(run, "s2", station_id=stations[1], vehicle_model_id=models[1], n=30)]
    values = first[:4] + first[:2] + [json.dumps(changed).encode()] + newer
    write_batch(spark, lake, stream, 1, values, first_offset=100)
    result = materialize_batch(lake, mongo, branch_name(stream, 1), instance)
    assert result.success
    meta = _meta(result)
    assert (meta["duplicates_dropped"], meta["conflicts_quarantined"], meta["rescued_rows"]) == (6, 1, 30)
    merge = repo.branch("main").get_commit()
    assert merge.metadata["evcharging.audit.duplicates_dropped"] == "6"
    assert merge.metadata["evcharging.rescued_rows"] == "30" and merge.metadata["evcharging.rescued_fields"] == '["firmware"]'
    events = spark.read.parquet(lake.s3a_uri("main", "events")).where(f"run_id = '{run}'").collect()
    assert len(events) == len({e.event_id for e in events}) == 35  # each event once
    rescued = {e.session_id: e.rescued_fields for e in events}
    assert json.loads(rescued["s2"]) == {"firmware": "1.2.3"} and rescued["s1"] is None
    [conflict] = _quarantine(spark, lake, run)
    assert conflict.reason == "conflict: event_id already on main with other content"
    assert json.loads(bytes(conflict.value))["power_kw"] == 99.0
