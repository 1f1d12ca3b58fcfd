"""The warehouse assets against the real lakeFS (a test branch) and MongoDB, with chDB in a
temporary directory: two commits each add part of a session, the facts load only what each commit
added and hold the session once, complete; each phase's time is in the metadata, the lakeFS secret
is not; the same step extends dim_time; re-materializing a commit changes nothing; dimensions and
marts materialize on top."""

from __future__ import annotations

import dagster as dg
import pytest

from evcharging.defs.warehouse.assets import (
    DIM_TIME, dim_stations, dim_vehicles, fact_charging_sessions, load_charging_events, mart_charger_type_kpis,
    mart_daily_energy_by_city_operator, mart_station_hourly_utilisation,
)
from evcharging.resources.from_settings import mongo_resource, spark_resource
from evcharging.resources.warehouse import WarehouseResource
from evcharging.warehouse.schema import qualified
from evcharging_tests.warehouse.events import session_events

pytestmark = pytest.mark.integration
DB = "evit"


def test_assets_load_each_commit_once(stack_settings, lake, tmp_path):
    s = stack_settings
    lakefs = lake.lakefs
    a, b = session_events("it-a", 6, run_id="it-run"), session_events("it-b", 3, run_id="it-run", first_offset=100)
    c1 = lake.commit(a[:4] + b, "first half")
    c2 = lake.commit(a[4:], "second half")

    warehouse = WarehouseResource(chdb_path=str(tmp_path / "chdb"), database=DB)
    with warehouse.connect() as wh:
        lake.start_warehouse_at_base(wh, DB)
    resources = {
        "warehouse": warehouse, "lakefs": lakefs,
        "mongo": mongo_resource(s), "spark": spark_resource(s),
    }
    instance = dg.DagsterInstance.ephemeral()

    def load(commit):  # the events, then the sessions (in production two jobs: see defs/lake/jobs.py)
        result = dg.materialize([load_charging_events, fact_charging_sessions], resources=resources, instance=instance,
                                run_config={"ops": {"load_charging_events": {"config": {"commit": commit}}}})
        assert result.success
        return {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}

    first = load(c1)
    assert first["fact_charging_events"]["events_loaded"].value == 7
    assert first["dim_time"]["hours_added"].value >= 1  # in the same step and warehouse session as the load
    assert first["fact_charging_events"]["events_seconds"].value > 0
    assert first["fact_charging_sessions"]["sessions_seconds"].value > 0
    assert first["fact_charging_sessions"]["dagster/row_count"].value == 1  # b only; a is still charging
    second = load(c2)
    assert second["fact_charging_events"]["files_added"].value >= 1
    assert second["fact_charging_events"]["events_loaded"].value == 2
    assert second["fact_charging_sessions"]["dagster/row_count"].value == 2
    again = load(c2)
    assert again["fact_charging_events"]["already_loaded"].value is True
    assert again["fact_charging_events"]["dagster/row_count"].value == 9
    assert again["dim_time"]["hours_added"].value == 0
    secret = lakefs.secret_access_key
    assert not [k for m in (first, second, again) for meta in m.values() for k, v in meta.items() if secret in str(v)]
    logs = [e.user_message for run in instance.get_runs() for e in instance.all_logs(run.run_id)]
    assert any("ClickHouse loaded 7 events" in m for m in logs) and not [m for m in logs if secret in m]

    # dim_time alone (as a person would pick it in the UI): extended, nothing loaded
    alone = dg.materialize([load_charging_events], selection=[DIM_TIME], resources=resources, instance=instance)
    assert [e.asset_key for e in alone.get_asset_materialization_events()] == [DIM_TIME]
    others = [dim_stations, dim_vehicles, mart_station_hourly_utilisation,
              mart_daily_energy_by_city_operator, mart_charger_type_kpis]
    assert dg.materialize(others, resources=resources, instance=instance).success
    with warehouse.connect() as wh:
        sessions = wh.query_rows(f"SELECT session_id, event_count FROM {qualified(DB, 'fact_charging_sessions')} "
                                 "FINAL ORDER BY session_id")
        hours = wh.query_rows(f"SELECT count() FROM {qualified(DB, 'dim_time')} FINAL")[0][0]
    assert sessions == [("it-a", 6), ("it-b", 3)]
    assert hours >= 1
