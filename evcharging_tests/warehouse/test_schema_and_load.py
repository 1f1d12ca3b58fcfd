"""The warehouse on chDB: the DDL creates every table (and is re-runnable); loads keyed by a lakeFS
commit are idempotent — loading the same commit twice, or a duplicate event in a later commit,
leaves the same rows; a session split across two loads becomes one fact row once it ends."""

from __future__ import annotations

import pytest

from evcharging.warehouse.load import LoadReport, last_loaded_commit, load_events, loaded, record_load
from evcharging.warehouse.schema import TABLES, ensure_tables, qualified
from evcharging_tests.warehouse.conftest import DB
from evcharging_tests.warehouse.events import frame, session_events


def _snapshot(wh):
    events = wh.query_rows(f"SELECT event_id, seq, energy_kwh FROM {qualified(DB, 'fact_charging_events')} FINAL "
                           "ORDER BY event_id")
    sessions = wh.query_rows(f"SELECT session_id, event_count, energy_kwh, duration_s, end_reason "
                             f"FROM {qualified(DB, 'fact_charging_sessions')} FINAL ORDER BY session_id")
    return events, sessions


def test_the_ddl_creates_every_table_and_can_run_again(warehouse):
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        ensure_tables(wh, DB)
        tables = {r[0] for r in wh.query_rows(f"SELECT name FROM system.tables WHERE database = '{DB}'")}
        engines = dict(wh.query_rows(f"SELECT name, engine FROM system.tables WHERE database = '{DB}'"))
        columns = [r[0] for r in wh.query_rows(
            f"SELECT name FROM system.columns WHERE database = '{DB}' AND table = 'fact_charging_events' ORDER BY position")]
    assert set(TABLES) <= tables
    assert engines["fact_charging_events"] == engines["fact_charging_sessions"] == "ReplacingMergeTree"
    assert columns.index("vehicle_model_id") == columns.index("vehicle_id") + 1


def test_a_new_contract_field_is_added_to_an_existing_table(warehouse):
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        wh.command(f"ALTER TABLE {qualified(DB, 'fact_charging_events')} DROP COLUMN vehicle_model_id")
        ensure_tables(wh, DB)
        columns = [r[0] for r in wh.query_rows(
            f"SELECT name FROM system.columns WHERE database = '{DB}' AND table = 'fact_charging_events' ORDER BY position")]
    assert columns.index("vehicle_model_id") == columns.index("vehicle_id") + 1


def test_loads_are_idempotent_and_complete_split_sessions(spark, warehouse):
    a, b = session_events("a", 6), session_events("b", 3, station_id="EVS00002", first_offset=100)
    commit1 = a[:4] + b  # a is still charging after the first commit
    commit2 = a[4:] + [{**a[1], "kafka_offset": 500}]  # the rest of a, and a replayed duplicate
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        assert last_loaded_commit(wh, DB) is None
        assert load_events(wh, DB, spark, frame(spark, commit1), "c1") == (7, 1)  # only b is complete
        record_load(wh, DB, LoadReport("c1", None, 1, 7, 7, 1))
        after_one = _snapshot(wh)
        assert [s[0] for s in after_one[1]] == ["b"]

        load_events(wh, DB, spark, frame(spark, commit1), "c1")  # the same commit again
        assert _snapshot(wh) == after_one

        assert load_events(wh, DB, spark, frame(spark, commit2), "c2") == (3, 1)
        record_load(wh, DB, LoadReport("c2", "c1", 1, 3, 3, 1))
        events, sessions = _snapshot(wh)
        assert len(events) == 9  # 6 + 3, the duplicate collapsed
        assert [(s[0], s[1]) for s in sessions] == [("a", 6), ("b", 3)]
        assert sessions[0][2] == pytest.approx(a[-1]["energy_kwh"])
        assert sessions[0][3] == pytest.approx(60.5 * 5)

        load_events(wh, DB, spark, frame(spark, commit2), "c2")
        assert _snapshot(wh) == (events, sessions)
        assert last_loaded_commit(wh, DB) == "c2"
        assert loaded(wh, DB, "c1").already_loaded and loaded(wh, DB, "nope") is None
