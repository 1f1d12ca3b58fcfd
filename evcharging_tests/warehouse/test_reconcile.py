"""Reconciliation from recorded counts catches a missing and a doubled event in the warehouse, a
Kafka record no batch accounts for, a load that lost events and offsets published twice; it tells
a run still on its way (main has not contiguously reached its last Kafka offsets, or its sessions
wait for the sessions lane) from a loss."""

from __future__ import annotations

import json

from evcharging.warehouse.lineage import holes, merged_batch, overlaps, union_ranges
from evcharging.warehouse.load import LoadReport
from evcharging.warehouse.reconcile import StageCounts, caught_up, reconcile, warehouse_stage
from evcharging.warehouse.schema import qualified
from evcharging_tests.warehouse.conftest import DB
from evcharging_tests.warehouse.events import session_events
from simulator.events import RunManifest

COUNTS = {"session_started": 2, "charging_progress": 6, "session_ended": 2}
TOPIC = "events"


def _manifest(run="r1", last_offsets=None) -> RunManifest:
    return RunManifest(run_id=run, seed=1, counts=dict(COUNTS), events_total=10, sessions_started=2,
                       sessions_completed=2, kafka_last_offsets=last_offsets or {"0": 5, "1": 3})


def _exact(**change) -> StageCounts:
    c = StageCounts(rows=dict(COUNTS), distinct=dict(COUNTS), sessions_completed=2, session_rows=2)
    for k, v in change.items():
        setattr(c, k, v)
    return c


def _load(commit="c1", ranges=None, events=10, loaded=None, quarantined=0, dropped=0) -> LoadReport:
    ranges = ranges if ranges is not None else {f"{TOPIC}:0": [[0, 6]], f"{TOPIC}:1": [[0, 4]]}
    records = sum(hi - lo for spans in ranges.values() for lo, hi in spans)
    return LoadReport(commit, None, 1, events, events if loaded is None else loaded, 2, batches=1,
                      kafka_records=records, kafka_ranges=json.dumps(ranges), lake_events=events,
                      quarantined=quarantined, dropped=dropped)


def _reconcile(warehouse=None, loads=None, manifest=None):
    return reconcile({"r1": manifest or _manifest()}, {"r1": warehouse or _exact()},
                     [_load()] if loads is None else loads, TOPIC)


def test_exact_counts_pass():
    result = _reconcile()
    assert result.passed and result.runs[0]["status"] == "exact"
    assert result.runs[0]["main reached its offsets"] == "yes"


def test_a_missing_event_in_the_warehouse_fails():
    short = _exact(rows={**COUNTS, "charging_progress": 5}, distinct={**COUNTS, "charging_progress": 5})
    result = _reconcile(warehouse=short)
    assert not result.passed and not result.only_in_flight
    assert {d.measure for d in result.differences} == {
        "warehouse charging_progress events", "warehouse charging_progress distinct event ids", "warehouse events_total"}
    assert "MISMATCH" in result.markdown()


def test_a_doubled_event_fails_even_when_distinct_ids_match():
    result = _reconcile(warehouse=_exact(rows={**COUNTS, "session_ended": 3}))
    assert [(d.measure, d.expected, d.actual) for d in result.differences] == [
        ("warehouse session_ended events", 2, 3), ("warehouse events_total", 10, 11)]


def test_a_doubled_session_row_fails():
    assert [d.measure for d in _reconcile(warehouse=_exact(session_rows=3)).differences] == ["warehouse session rows"]


def test_a_deficit_is_in_flight_until_main_passes_the_runs_offsets_contiguously():
    short = _exact(rows={**COUNTS, "session_ended": 1}, distinct={**COUNTS, "session_ended": 1}, sessions_completed=1,
                   session_rows=1)
    behind = _load(ranges={f"{TOPIC}:0": [[0, 6]], f"{TOPIC}:1": [[0, 3]]}, events=9)  # offset 3 of partition 1 not yet
    pending = _reconcile(warehouse=short, loads=[behind])
    assert not pending.passed and pending.only_in_flight and pending.runs[0]["status"] == "in flight"
    # A batch in the middle is not on main (blocked or waiting): what comes after it is in flight too.
    gap = [_load("c1", {f"{TOPIC}:0": [[0, 2]], f"{TOPIC}:1": [[0, 4]]}, events=6),
           _load("c2", {f"{TOPIC}:0": [[4, 6]]}, events=2)]
    assert _reconcile(warehouse=short, loads=gap).only_in_flight
    assert _reconcile(warehouse=short, loads=gap).unpublished == {f"{TOPIC}:0": [[2, 4]]}
    lost = _reconcile(warehouse=short)  # main has every offset of the run, the warehouse does not
    assert not lost.only_in_flight and lost.runs[0]["status"] == "MISMATCH"


def test_a_sessions_deficit_is_in_flight_while_loads_wait_for_the_sessions_lane():
    """Main reached the run's offsets and every event is in, but the last loads' sessions are not
    summarised yet: on its way, not lost; once the lane caught up, the same deficit is a loss."""
    behind = _exact(sessions_completed=1, session_rows=1)
    waiting = reconcile({"r1": _manifest()}, {"r1": behind}, [_load()], TOPIC, unsessionized_loads=2)
    assert not waiting.passed and waiting.only_in_flight and waiting.runs[0]["status"] == "in flight"
    assert "the sessions of 2 loads are not summarised yet" in str(waiting.differences[0])
    lost = reconcile({"r1": _manifest()}, {"r1": behind}, [_load()], TOPIC, unsessionized_loads=0)
    assert not lost.only_in_flight and lost.runs[0]["status"] == "MISMATCH"
    short = _exact(rows={**COUNTS, "charging_progress": 5}, distinct={**COUNTS, "charging_progress": 5})
    events_lost = reconcile({"r1": _manifest()}, {"r1": short}, [_load()], TOPIC, unsessionized_loads=2)
    assert not events_lost.only_in_flight  # the sessions lane being behind excuses no missing event


def test_a_kafka_record_no_batch_accounts_for_fails():
    unaccounted = _load(events=9)  # 10 records consumed, 9 events published, none quarantined or dropped
    [difference] = [d for d in _reconcile(loads=[unaccounted]).differences if d.subject.startswith("load")]
    assert (difference.expected, difference.actual) == (10, 9)
    accounted = _reconcile(loads=[_load(events=8, quarantined=1, dropped=1)])  # 8 + 1 + 1 = the 10 records
    assert not [d for d in accounted.differences if d.subject.startswith("load")]


def test_a_load_that_lost_events_fails():
    result = _reconcile(loads=[_load(loaded=9)])
    assert "events loaded into ClickHouse vs events its batches published = 9, expected 10" in str(result.differences[0])


def test_offsets_published_twice_fail():
    twice = [_load("c1"), _load("c2", {f"{TOPIC}:0": [[4, 6]]}, events=2)]
    result = _reconcile(loads=twice)
    assert any(d.subject == f"kafka {TOPIC}:0" and d.actual == 2 for d in result.differences)


def test_old_offsets_deleted_by_retention_do_not_matter():
    """Main's records start where the stream started reading (say offset 1,000 after retention):
    the run is caught up once main passes its last offsets, whatever came before."""
    late = _load(ranges={f"{TOPIC}:0": [[1000, 1006]], f"{TOPIC}:1": [[500, 504]]})
    manifest = _manifest(last_offsets={"0": 1005, "1": 503})
    assert _reconcile(loads=[late], manifest=manifest).passed


def test_runs_without_a_manifest_are_listed_not_compared():
    result = reconcile({}, {"r1": _exact()}, [_load()], TOPIC)
    assert result.passed and result.runs_without_manifest == ["r1"]


def test_ranges_are_joined_and_their_overlaps_and_holes_found():
    ranges = union_ranges({"t:0": [[0, 5]]}, {"t:0": [[5, 9]], "t:1": [[0, 2]]}, {"t:0": [[12, 15]], "t:1": [[1, 3]]})
    assert ranges == {"t:0": [[0, 9], [12, 15]], "t:1": [[0, 2], [1, 3]]}
    assert holes(ranges) == {"t:0": [[9, 12]]} and overlaps(ranges) == {"t:1": [[1, 2]]}
    assert caught_up({"r": _manifest(last_offsets={"0": 8})}, ranges, "t") == {"r": True}
    assert caught_up({"r": _manifest(last_offsets={"0": 12})}, ranges, "t") == {"r": False}


def test_a_merge_commit_names_its_batch_and_other_commits_none():
    meta = {"evcharging.ingest_branch": "ingest-e-0000000001", "evcharging.kafka_topic": "t",
            "evcharging.kafka_offsets": '{"0": [10, 20], "3": [0, 5]}', "evcharging.valid_rows": "14",
            "evcharging.quarantined_rows": "1"}
    batch = merged_batch("c9", meta)
    assert batch.ranges == {"t:0": [[10, 20]], "t:3": [[0, 5]]} and batch.kafka_records == 15
    assert (batch.valid_rows, batch.quarantined_rows, batch.dropped_rows) == (14, 1, 0)
    # The publish dropped 2 exact copies and quarantined a conflict: 11 events reached main.
    published = merged_batch("c9", {**meta, "evcharging.audit.published_rows": "11", "evcharging.audit.duplicates_dropped": "2",
                                     "evcharging.audit.conflicts_quarantined": "1"})
    assert (published.valid_rows, published.quarantined_rows, published.dropped_rows) == (11, 2, 2)
    # And 1 reading re-sent under another event id dropped, 1 conflicting reading quarantined.
    readings = merged_batch("c9", {**meta, "evcharging.audit.published_rows": "9", "evcharging.audit.duplicates_dropped": "2",
                                    "evcharging.audit.conflicts_quarantined": "1",
                                    "evcharging.audit.resent_readings_dropped": "1",
                                    "evcharging.audit.reading_conflicts_quarantined": "1"})
    assert (readings.valid_rows, readings.quarantined_rows, readings.dropped_rows) == (9, 3, 3)
    assert readings.valid_rows + readings.quarantined_rows + readings.dropped_rows == batch.kafka_records
    assert merged_batch("c8", {"evcharging.batch_id": "1"}) is None


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
    result = reconcile({"r1": manifest}, {"r1": counts}, [], TOPIC)
    assert ("warehouse charging_progress events", 2, 3) in [(d.measure, d.expected, d.actual) for d in result.differences]
