"""The sessions lane: the events of several loads are summarised in one Spark pass, afterwards
nothing is pending, and loads that added no event never start Spark."""

from __future__ import annotations

import pytest

from evcharging.warehouse.load import load_lake_commit, sessionize_pending, unsessionized_commits
from evcharging.warehouse.schema import qualified
from evcharging_tests.warehouse.conftest import DB
from evcharging_tests.warehouse.events import session_events

NO_SPARK = lambda: pytest.fail("nothing to summarise must not start Spark")  # noqa: E731


def test_several_loads_are_summarised_in_one_pass(lake, warehouse, spark):
    a, b = session_events("sl-a", 6, run_id="sl"), session_events("sl-b", 3, run_id="sl", first_offset=50)
    c1, c2 = lake.commit(a[:3] + b, "first"), lake.commit(a[3:], "second")
    with warehouse.connect() as wh:
        lake.start_warehouse_at_base(wh, DB)
    assert sessionize_pending(warehouse.connect, DB, NO_SPARK).commits == []  # the base load added no event
    with warehouse.connect() as wh:
        for commit in (c1, c2):
            assert load_lake_commit(wh, DB, None, lake.lakefs, commit).events_loaded > 0  # events only
        assert [c for c, _ in unsessionized_commits(wh, DB)] == [c1, c2]
    report = sessionize_pending(warehouse.connect, DB, spark)
    assert report.commits == [c1, c2] and report.sessions_loaded == 2
    assert sessionize_pending(warehouse.connect, DB, NO_SPARK).commits == []
    with warehouse.connect() as wh:
        sessions = wh.query_rows(f"SELECT session_id, event_count FROM {qualified(DB, 'fact_charging_sessions')} "
                                 "FINAL ORDER BY session_id")
    assert sessions == [("sl-a", 6), ("sl-b", 3)]
