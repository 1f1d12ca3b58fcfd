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
from evcharging.warehouse.load import load_lake_commit
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
        [(rows, distinct)] = wh.query_rows(f"SELECT count(), uniqExact(event_id) FROM "
                                           f"{qualified(DB, 'fact_charging_events')} FINAL")
        [(sessions, distinct_sessions)] = wh.query_rows(f"SELECT count(), uniqExact(session_id) FROM "
                                                        f"{qualified(DB, 'fact_charging_sessions')} FINAL")
    main_rows = len(spark.read.parquet(lake.s3a_uri("main", "events")).collect())
    assert rows == distinct == main_rows > 0
    assert sessions == distinct_sessions

