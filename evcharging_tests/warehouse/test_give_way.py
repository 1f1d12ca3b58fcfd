"""A run of the events lane never waits long for a warehouse another process holds: its event load
gives way (no materialization; main_commits asks again), so it never holds the lane that publishing
needs (real chDB, held by a second process the way a sessions pass or `evcharging sql` holds it)."""

from __future__ import annotations

import subprocess
import sys
import time

import dagster as dg
import pytest

from evcharging.defs.lake.jobs import PUBLISH_GIVES_WAY_AFTER_S, publish_ingest_batches
from evcharging.defs.warehouse.assets import DIM_TIME, FACT_EVENTS, load_charging_events
from evcharging.resources.lakefs import LakeFSResource
from evcharging.resources.warehouse import WarehouseBusyError, WarehouseResource
from evcharging_tests.integration.test_dev_lanes_and_stop import HOLD_CHDB


@pytest.fixture
def held_chdb(tmp_path):
    path = tmp_path / "chdb"
    path.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CHDB, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield path
    finally:
        holder.stdin.close()
        holder.wait(30)


@pytest.mark.parametrize("job_name", [publish_ingest_batches.name, "refresh_lake_main"])
def test_the_events_lane_as_defined_gives_way_to_a_held_warehouse_within_its_bounds(held_chdb, monkeypatch, job_name):
    """Each job of the events lane as the code location defines it (its tags and resources), with its
    warehouse at chDB held by another process: the step that loads the events and extends dim_time
    gives way after PUBLISH_GIVES_WAY_AFTER_S, once (one warehouse session for both), and records
    neither, so the run ends instead of waiting for the holder. The commit to load is chosen only
    once the warehouse is held, so lakeFS is never asked."""
    from evcharging.definitions import defs

    monkeypatch.setenv("EVCHARGING_CHDB_PATH", str(held_chdb))
    job = defs().get_job_def(job_name)
    instance = dg.DagsterInstance.ephemeral()
    started = time.monotonic()
    result = job.execute_in_process(instance=instance, asset_selection=[FACT_EVENTS, DIM_TIME])
    elapsed = time.monotonic() - started
    assert result.success
    assert PUBLISH_GIVES_WAY_AFTER_S <= elapsed < 2 * PUBLISH_GIVES_WAY_AFTER_S, elapsed  # one wait, not two
    assert instance.get_latest_materialization_event(FACT_EVENTS) is None
    assert instance.get_latest_materialization_event(DIM_TIME) is None


def test_a_load_that_gives_way_records_nothing_and_one_that_may_wait_says_why_it_failed(held_chdb):
    warehouse = WarehouseResource(chdb_path=str(held_chdb))
    # Never called: the commit comes from the config.
    lakefs = LakeFSResource(endpoint="http://127.0.0.1:9", access_key_id="x", secret_access_key="x", repository="r")
    instance = dg.DagsterInstance.ephemeral()
    config = {"commit": "c0ffee", "give_way_after_seconds": 1}
    started = time.monotonic()
    result = dg.materialize([load_charging_events], instance=instance, resources={"lakefs": lakefs, "warehouse": warehouse},
                            run_config={"ops": {"load_charging_events": {"config": config}}})
    assert result.success and time.monotonic() - started < 30
    assert instance.get_latest_materialization_event(FACT_EVENTS) is None
    assert instance.get_latest_materialization_event(DIM_TIME) is None
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("left to a later run of the events lane" in m for m in messages), messages

    # Without give_way_after_seconds the step waits as long as the resource says, then fails clearly.
    with pytest.raises(WarehouseBusyError, match="stayed locked by another process for 1 s"):
        with warehouse.model_copy(update={"lock_wait_seconds": 1}).connect():
            pass
