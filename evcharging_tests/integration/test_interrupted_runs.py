"""A Dagster run that dies in the middle of a publication or a warehouse load leaves a state its
re-run completes exactly: each event once on main and in the warehouse, copies counted once.

The run is stopped at the worst points by making the next step raise (as a SIGKILL would leave
things, minus the process): after the batch's copies were taken out of its branch but before the
merge; after the merge but before the branch was deleted; after the warehouse inserted a commit's
events but before it recorded the load.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from evcharging.lake import ingest
from evcharging.lake.ingest import event_ids_on_main
from evcharging.streaming.batches import branch_name
from evcharging.warehouse import load
from evcharging.warehouse.load import load_lake_commit, load_log
from evcharging.warehouse.schema import qualified
from evcharging_tests.factories import session_events
from evcharging_tests.integration.test_wap import lake, materialize_batch, reference, write_batch  # noqa: F401
from evcharging_tests.warehouse.conftest import DB, warehouse  # noqa: F401

pytestmark = pytest.mark.integration


class Killed(BaseException):
    """Stands for the process dying: not an Exception, so no code of ours handles it (Dagster records
    the step as failed, as it would find a killed run)."""


def _meta(result) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("ingest_batch")[0].metadata.items()}


def _die(*args, **kwargs):
    raise Killed()


def test_publication_killed_mid_way_completes_exactly_on_rerun(spark, lake, reference, unique_name, monkeypatch):  # noqa: F811
    mongo, stations, models = reference
    repo, instance, stream, run = lake.repo(), dg.DagsterInstance.ephemeral(), f"k{unique_name}", f"run-{unique_name}"
    events = session_events(run, "s1", station_id=stations[0], vehicle_model_id=models[0], n=40)
    write_batch(spark, lake, stream, 0, events[:20])
    assert materialize_batch(lake, mongo, branch_name(stream, 0), instance).success

    # Batch 1 repeats 5 events of batch 0 and then brings 20 new ones.
    write_batch(spark, lake, stream, 1, events[15:], first_offset=100)
    key = branch_name(stream, 1)
    with monkeypatch.context() as patch:  # dies after the copies left the branch, before the merge
        patch.setattr(ingest, "publish", _die)
        assert not materialize_batch(lake, mongo, key, instance).success
    assert repo.branch(key).get_commit().metadata["evcharging.audit.withdrawn_from"]
    with monkeypatch.context() as patch:  # dies after the merge, before the branch is deleted
        patch.setattr(type(repo.branch(key)), "delete", _die)
        assert not materialize_batch(lake, mongo, key, instance).success
    head = repo.branch("main").get_commit()
    assert head.metadata["evcharging.audit.duplicates_dropped"] == "5"

    rerun = materialize_batch(lake, mongo, key, instance)
    assert rerun.success and _meta(rerun)["status"] == "already merged"
    assert repo.branch("main").get_commit().id == head.id
    assert not list(repo.branches(prefix=key)), "the re-run deleted the branch the killed run left"
    on_main = spark.read.parquet(lake.s3a_uri("main", "events")).where(f"run_id = '{run}'").select("event_id").collect()
    assert sorted(r.event_id for r in on_main) == sorted(json.loads(e)["event_id"] for e in events)
    assert {json.loads(e)["event_id"] for e in events} <= event_ids_on_main(lake, ["2026-01-05"])


def test_warehouse_load_killed_before_it_is_recorded_is_exact_after_rerun(spark, lake, reference, warehouse,  # noqa: F811
                                                                          unique_name, monkeypatch):
    mongo, stations, models = reference
    stream = f"w{unique_name}"
    write_batch(spark, lake, stream, 0, session_events(f"run-{unique_name}", "s1", station_id=stations[0],
                                                       vehicle_model_id=models[0], n=10))
    assert materialize_batch(lake, mongo, branch_name(stream, 0), dg.DagsterInstance.ephemeral()).success
    commit = lake.repo().branch("main").get_commit().id
    with warehouse.connect() as wh:
        with monkeypatch.context() as patch:
            patch.setattr(load, "record_load", _die)
            with pytest.raises(Killed):
                load_lake_commit(wh, DB, spark, lake, commit)
        report = load_lake_commit(wh, DB, spark, lake, commit)
        assert not report.already_loaded
        # No FINAL: the repeated load's INSERT is deduplicated, so no copy exists even before merges.
        [(rows, distinct)] = wh.query_rows(f"SELECT count(), uniqExact(event_id) FROM "
                                           f"{qualified(DB, 'fact_charging_events')}")
        recorded = sum(r.events_loaded for r in load_log(wh, DB))
        [(sessions, distinct_sessions)] = wh.query_rows(f"SELECT count(), uniqExact(session_id) FROM "
                                                        f"{qualified(DB, 'fact_charging_sessions')} FINAL")
    main_rows = len(spark.read.parquet(lake.s3a_uri("main", "events")).collect())
    assert rows == distinct == main_rows == recorded > 0
    assert sessions == distinct_sessions


def test_a_rewrite_killed_before_its_merge_is_not_reused_by_a_rerun_that_withdraws_other_rows(
        spark, lake, reference, unique_name, monkeypatch):  # noqa: F811
    """Killed after the operator's action withdrew a session of an unknown station; then the station
    is added to the reference data and the batch published without the action: every row arrives."""
    from pymongo import MongoClient

    mongo, stations, models = reference
    repo, instance, stream, run = lake.repo(), dg.DagsterInstance.ephemeral(), f"o{unique_name}", f"run-{unique_name}"
    known = session_events(run, "s1", station_id=stations[0], vehicle_model_id=models[0], n=10)
    unknown_station = f"EVS9{unique_name[-4:]}"
    stranger = session_events(run, "s2", station_id=unknown_station, vehicle_model_id=models[0], n=5,
                              start_ms=1767600000000 + 3_600_000)
    write_batch(spark, lake, stream, 0, known + stranger + known[:2])  # and two exact copies
    key = branch_name(stream, 0)
    operator = {"ops": {"ingest_batch": {"config": {"publish_without_offending_rows": True}}}}
    with monkeypatch.context() as patch:  # dies after the rewrite (copies and the stranger's rows out), before the merge
        patch.setattr(ingest, "publish", _die)
        assert not materialize_batch(lake, mongo, key, instance, run_config=operator).success
    assert repo.branch(key).get_commit().metadata["evcharging.audit.withdrawn_rows"] == "5"

    with MongoClient(mongo.url) as client:  # the cause is fixed: the station is added to the reference data
        stations_collection = client[mongo.database]["stations"]
        stations_collection.insert_one({**stations_collection.find_one({"_id": stations[0]}), "_id": unknown_station,
                                        "station_id": unknown_station})
    try:
        rerun = materialize_batch(lake, mongo, key, instance)  # re-materialized without the action
    finally:
        with MongoClient(mongo.url) as client:
            client[mongo.database]["stations"].delete_one({"_id": unknown_station})
    assert rerun.success and _meta(rerun)["status"] == "merged"
    head = repo.branch("main").get_commit()
    assert head.metadata["evcharging.audit.duplicates_dropped"] == "2" and "evcharging.audit.action" not in head.metadata
    on_main = spark.read.parquet(lake.s3a_uri("main", "events")).where(f"run_id = '{run}'").select("event_id").collect()
    assert sorted(r.event_id for r in on_main) == sorted(json.loads(e)["event_id"] for e in known + stranger)
    assert not list(repo.ref("main").objects(prefix="quarantine/events/part-audit")), "nothing was quarantined"
