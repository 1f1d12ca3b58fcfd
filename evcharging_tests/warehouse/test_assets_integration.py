"""The warehouse assets against the real lakeFS (a test branch) and MongoDB, with chDB in a
temporary directory: two commits each add part of a session, the facts load only what each commit
added and hold the session once, complete; re-materializing a commit changes nothing; dimensions
and marts materialize on top."""

from __future__ import annotations

import dagster as dg
import pytest

from evcharging.defs.warehouse.assets import (
    dim_stations, dim_time, dim_vehicles, mart_charger_type_kpis, mart_daily_energy_by_city_operator,
    mart_station_hourly_utilisation, warehouse_facts,
)
from evcharging.resources.from_settings import lakefs_resource, mongo_resource, spark_resource
from evcharging.resources.warehouse import WarehouseResource
from evcharging.warehouse.load import LoadReport, record_load
from evcharging.warehouse.schema import ensure_tables, qualified
from evcharging_tests.warehouse.events import frame, session_events

pytestmark = pytest.mark.integration
DB = "evit"


@pytest.fixture
def test_branch(stack_settings, unique_name):
    lakefs = lakefs_resource(stack_settings)
    branch = lakefs.repo().branch(f"warehouse-{unique_name}").create(source_reference=lakefs.default_branch)
    yield lakefs, branch
    branch.delete()


def _commit(spark, lakefs, branch, rows, message) -> str:
    frame(spark, rows).write.mode("append").partitionBy("event_date").parquet(lakefs.s3a_uri(branch.id, "events"))
    return branch.commit(message=message).get_commit().id


def test_assets_load_each_commit_once(spark, stack_settings, test_branch, tmp_path):
    s = stack_settings
    lakefs, branch = test_branch
    base = branch.get_commit().id
    a, b = session_events("it-a", 6, run_id="it-run"), session_events("it-b", 3, run_id="it-run", first_offset=100)
    c1 = _commit(spark, lakefs, branch, a[:4] + b, "first half")
    c2 = _commit(spark, lakefs, branch, a[4:], "second half")

    warehouse = WarehouseResource(chdb_path=str(tmp_path / "chdb"), database=DB)
    with warehouse.connect() as wh:  # as if the warehouse had loaded main up to where the branch starts
        ensure_tables(wh, DB)
        record_load(wh, DB, LoadReport(base, None, 0, 0, 0, 0))
    resources = {
        "warehouse": warehouse, "lakefs": lakefs,
        "mongo": mongo_resource(s), "spark": spark_resource(s),
    }
    instance = dg.DagsterInstance.ephemeral()

    def load(commit):
        result = dg.materialize([warehouse_facts], resources=resources, instance=instance,
                                run_config={"ops": {"warehouse_facts": {"config": {"commit": commit}}}})
        assert result.success
        return {m.asset_key.path[-1]: m.metadata for m in result.asset_materializations_for_node("warehouse_facts")}

    first = load(c1)
    assert first["fact_charging_events"]["events_loaded"].value == 7
    assert first["fact_charging_sessions"]["dagster/row_count"].value == 1  # b only; a is still charging
    second = load(c2)
    assert second["fact_charging_events"]["files_added"].value >= 1
    assert second["fact_charging_events"]["events_loaded"].value == 2
    assert second["fact_charging_sessions"]["dagster/row_count"].value == 2
    again = load(c2)
    assert again["fact_charging_events"]["already_loaded"].value is True
    assert again["fact_charging_events"]["dagster/row_count"].value == 9

    others = [dim_stations, dim_vehicles, dim_time, mart_station_hourly_utilisation,
              mart_daily_energy_by_city_operator, mart_charger_type_kpis]
    assert dg.materialize(others, resources=resources, instance=instance).success
    with warehouse.connect() as wh:
        sessions = wh.query_rows(f"SELECT session_id, event_count FROM {qualified(DB, 'fact_charging_sessions')} "
                                 "FINAL ORDER BY session_id")
        hours = wh.query_rows(f"SELECT count() FROM {qualified(DB, 'dim_time')} FINAL")[0][0]
    assert sessions == [("it-a", 6), ("it-b", 3)]
    assert hours >= 1
