"""Reconciliation catches a missing and a doubled event at any stage, tells a run still on its way
(the lake has not reached its Kafka offsets) from a loss, and counts each stage the same way."""

from __future__ import annotations

from evcharging.warehouse.reconcile import StageCounts, caught_up, count_events, reconcile, warehouse_stage
from evcharging.warehouse.schema import qualified
from evcharging_tests.warehouse.conftest import DB
from evcharging_tests.warehouse.events import frame, session_events
from simulator.events import RunManifest

COUNTS = {"session_started": 2, "charging_progress": 6, "session_ended": 2}


def _manifest(run="r1") -> RunManifest:
    return RunManifest(run_id=run, seed=1, counts=dict(COUNTS), events_total=10, sessions_started=2,
                       sessions_completed=2)


def _exact(**change) -> StageCounts:
    c = StageCounts(rows=dict(COUNTS), distinct=dict(COUNTS), sessions_completed=2)
    for k, v in change.items():
        setattr(c, k, v)
    return c


def _stages(kafka=None, lake=None, warehouse=None):
    return {"kafka": {"r1": kafka or _exact()}, "lake": {"r1": lake or _exact()},
            "warehouse": {"r1": warehouse or _exact(session_rows=2)}}


def test_exact_counts_pass():
    result = reconcile({"r1": _manifest()}, _stages())
    assert result.passed and result.runs[0]["status"] == "exact"


def test_a_missing_event_in_the_warehouse_fails():
    short = _exact(rows={**COUNTS, "charging_progress": 5}, distinct={**COUNTS, "charging_progress": 5},
                   session_rows=2)
    result = reconcile({"r1": _manifest()}, _stages(warehouse=short), {"r1": True})
    assert not result.passed and not result.only_in_flight
    assert {d.measure for d in result.differences} == {
        "charging_progress events", "charging_progress distinct event ids", "events_total"}
    assert "MISMATCH" in result.markdown()


def test_a_doubled_event_fails_even_when_distinct_ids_match():
    doubled = _exact(rows={**COUNTS, "session_ended": 3}, session_rows=2)
    result = reconcile({"r1": _manifest()}, _stages(warehouse=doubled))
    assert [(d.stage, d.measure, d.expected, d.actual) for d in result.differences] == [
        ("warehouse", "session_ended events", 2, 3), ("warehouse", "events_total", 10, 11)]


def test_a_doubled_session_row_fails():
    result = reconcile({"r1": _manifest()}, _stages(warehouse=_exact(session_rows=3)))
    assert [d.measure for d in result.differences] == ["session rows"]


def test_a_kafka_loss_is_never_in_flight():
    short = _exact(rows={**COUNTS, "session_started": 1}, distinct={**COUNTS, "session_started": 1})
    result = reconcile({"r1": _manifest()}, _stages(kafka=short), {"r1": False})
    assert result.differences and not result.only_in_flight


def test_a_lake_deficit_is_in_flight_until_the_lake_passes_the_runs_offsets():
    short = _exact(rows={**COUNTS, "session_ended": 1}, distinct={**COUNTS, "session_ended": 1}, sessions_completed=1)
    behind = caught_up({"r1": {0: 10, 1: 7}}, {0: 10, 1: 5})
    assert behind == {"r1": False}
    pending = reconcile({"r1": _manifest()}, _stages(lake=short, warehouse=_exact(**vars(short))), behind)
    assert not pending.passed and pending.only_in_flight and pending.runs[0]["status"] == "in flight"
    lost = reconcile({"r1": _manifest()}, _stages(lake=short), caught_up({"r1": {0: 10, 1: 7}}, {0: 12, 1: 7}))
    assert not lost.only_in_flight


def test_runs_without_a_manifest_are_listed_not_compared():
    result = reconcile({}, _stages())
    assert result.passed and result.runs_without_manifest == ["r1"]


def test_stage_counting_sees_rows_and_distinct_ids(spark):
    events = session_events("s1", 4, run_id="r1") + session_events("s2", 3, run_id="r1", ended=False, partition=1)
    events.append({**events[2], "kafka_offset": 99})  # a doubled progress event
    df = frame(spark, events).withColumnRenamed("kafka_partition", "partition").withColumnRenamed("kafka_offset", "offset")
    counts, offsets = count_events(df)
    c = counts["r1"]
    assert c.rows == {"session_started": 2, "charging_progress": 5, "session_ended": 1}
    assert c.distinct["charging_progress"] == 4 and c.sessions_completed == 1
    assert offsets == {"r1": {0: 99, 1: 2}}


def test_warehouse_counting_sees_a_doubled_event(lake, warehouse):
    events = session_events("s1", 4, run_id="r1")
    with warehouse.connect() as wh:
        assert lake.load(wh, DB, events).events_loaded == 4
        assert warehouse_stage(wh, DB)["r1"].rows == {"session_started": 1, "charging_progress": 2, "session_ended": 1}
        # The same event id under another sort key (a corrupt copy): FINAL cannot collapse it.
        wh.command(f"INSERT INTO {qualified(DB, 'fact_charging_events')} SELECT * REPLACE ('EVS09999' AS station_id) "
                   f"FROM {qualified(DB, 'fact_charging_events')} WHERE seq = 1")
        counts = warehouse_stage(wh, DB)["r1"]
    assert counts.rows["charging_progress"] == 3 and counts.distinct["charging_progress"] == 2
    manifest = RunManifest(run_id="r1", seed=1, counts={"session_started": 1, "charging_progress": 2, "session_ended": 1},
                           events_total=4, sessions_completed=1)
    result = reconcile({"r1": manifest}, {"warehouse": {"r1": counts}})
    assert ("warehouse", "charging_progress events", 2, 3) in [(d.stage, d.measure, d.expected, d.actual)
                                                              for d in result.differences]
