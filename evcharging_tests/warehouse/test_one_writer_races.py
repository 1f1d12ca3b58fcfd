"""The races a long-running warehouse meets, on real chDB and lakeFS: a refresh whose target an
earlier load already passed, the same head asked for by both lanes, a load that lands during a
sessions pass, and what a load records (from its own rows, not from the table)."""

from __future__ import annotations

from evcharging.warehouse.load import (
    load_lake_commit, load_log, loaded_totals, sessionize_pending, unsessionized_commits,
)
from evcharging.warehouse.schema import qualified
from evcharging_tests.warehouse.conftest import DB
from evcharging_tests.warehouse.events import session_events


def _events(wh) -> tuple[int, int]:
    # No FINAL: a doubled row must show.
    [(rows, distinct)] = wh.query_rows(f"SELECT count(), uniqExact(event_id) FROM {qualified(DB, 'fact_charging_events')}")
    return int(rows), int(distinct)


def test_a_refresh_whose_target_a_newer_load_passed_has_nothing_to_do(lake, warehouse):
    c1 = lake.commit(session_events("r-a", 3, run_id="r"), "first")
    c2 = lake.commit(session_events("r-b", 4, run_id="r", first_offset=50), "second")
    with warehouse.connect() as wh:
        lake.start_warehouse_at_base(wh, DB)
        assert load_lake_commit(wh, DB, None, lake.lakefs, c2).events_loaded == 7  # the publish run's newer load
        late = load_lake_commit(wh, DB, None, lake.lakefs, c1)  # a refresh that chose c1 earlier
        again = load_lake_commit(wh, DB, None, lake.lakefs, c2)  # both lanes asked for the same head
        assert (late.commit, late.already_loaded) == (c2, True)  # reports what the warehouse holds
        assert again.already_loaded
        assert _events(wh) == (7, 7)
        assert [r.commit for r in load_log(wh, DB)][1:] == [c2]  # one load_log row (after the base)
        assert loaded_totals(wh, DB)[0] == 7


def test_a_load_records_its_span_counts_and_preview_from_its_own_rows(lake, warehouse):
    events = session_events("p-a", 5, run_id="p")
    commit = lake.commit(events, "one")
    with warehouse.connect() as wh:
        lake.start_warehouse_at_base(wh, DB)
        report = load_lake_commit(wh, DB, None, lake.lakefs, commit)
        counts = wh.query_rows(f"SELECT event_type, events FROM {qualified(DB, 'load_counts')} FINAL "
                               f"WHERE run_id = 'p' ORDER BY event_type")
        leftovers = wh.query_rows(f"SELECT name FROM system.tables WHERE database = '{DB}' AND name LIKE '%__load_%'")
    assert report.events_loaded == 5 and report.last_event_ms >= report.first_event_ms
    assert dict(counts) == {"charging_progress": 3, "session_ended": 1, "session_started": 1}
    assert "p-a" in report.preview and not leftovers


def test_a_load_that_lands_during_a_sessions_pass_waits_for_the_next(lake, warehouse, spark):
    """Session d-a starts before the pass and ends in a load that lands while Spark works: the pass
    neither counts that load nor closes d-a; the next pass summarises d-a from all its events."""
    a = session_events("d-a", 5, run_id="d")
    c1 = lake.commit(a[:3] + session_events("d-b", 3, run_id="d", first_offset=50), "before the pass")
    c2 = lake.commit(a[3:], "during the pass")
    with warehouse.connect() as wh:
        lake.start_warehouse_at_base(wh, DB)
        load_lake_commit(wh, DB, None, lake.lakefs, c1)

    def spark_while_a_load_lands():
        with warehouse.connect() as wh:  # the pass holds no connection while Spark works
            load_lake_commit(wh, DB, None, lake.lakefs, c2)
        return spark

    report = sessionize_pending(warehouse.connect, DB, spark_while_a_load_lands)
    assert report.commits == [c1] and report.through == c1 and report.sessions_loaded == 1  # d-b
    with warehouse.connect() as wh:
        assert [c for c, _ in unsessionized_commits(wh, DB)] == [c2]
    following = sessionize_pending(warehouse.connect, DB, spark)
    assert following.commits == [c2] and following.through == c2 and following.sessions_loaded == 1
    with warehouse.connect() as wh:
        sessions = wh.query_rows(f"SELECT session_id, event_count FROM {qualified(DB, 'fact_charging_sessions')} "
                                 "FINAL ORDER BY session_id")
        still_open = wh.query_rows(f"SELECT count() FROM {qualified(DB, 'session_events_open')}")
    assert sessions == [("d-a", 5), ("d-b", 3)] and still_open == [(0,)]
