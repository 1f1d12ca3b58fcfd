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


def test_a_backlog_is_summarised_in_passes_of_bounded_size(lake, warehouse, spark, monkeypatch):
    """At most MAX_LOADS_PER_PASS loads a pass, oldest first; a session spanning the passes' loads is whole, once."""
    import evcharging.warehouse.load as load_module

    monkeypatch.setattr(load_module, "MAX_LOADS_PER_PASS", 2)
    a, b = session_events("bp-a", 6, run_id="bp"), session_events("bp-b", 3, run_id="bp", first_offset=50)
    commits = [lake.commit(rows, f"load {i}") for i, rows in enumerate((a[:2], a[2:4] + b, a[4:]))]
    with warehouse.connect() as wh:
        lake.start_warehouse_at_base(wh, DB)
    assert sessionize_pending(warehouse.connect, DB, NO_SPARK).commits == []  # the base load added no event
    with warehouse.connect() as wh:
        for commit in commits:
            load_lake_commit(wh, DB, None, lake.lakefs, commit)
    passes = [sessionize_pending(warehouse.connect, DB, spark) for _ in range(2)]
    assert [p.commits for p in passes] == [commits[:2], commits[2:]]
    # Every load's events are in before the first pass: a (ended in load 2) is whole already, so the
    # first pass summarises both sessions, and the second, taking load 2, finds nothing left open.
    assert [p.sessions_loaded for p in passes] == [2, 0]
    with warehouse.connect() as wh:
        sessions = wh.query_rows(f"SELECT session_id, event_count FROM {qualified(DB, 'fact_charging_sessions')} "
                                 "ORDER BY session_id")  # no FINAL: a session written twice would show
    assert sessions == [("bp-a", 6), ("bp-b", 3)]


def _open_sessions(wh, sessions: int, events_each: int) -> None:
    table = qualified(DB, "session_events_open")
    for part in range(4):  # four inserts: four parts, as four loads would leave
        wh.command(f"INSERT INTO {table} (session_id, event_id, event_time) "
                   f"SELECT concat('cs-', toString(number % {sessions})), concat('{part}-', toString(number)), "
                   f"toDateTime64('2026-01-05 08:00:00', 3, 'UTC') + number "
                   f"FROM numbers({sessions * events_each // 4})")


def test_closed_sessions_leave_the_disk_once_they_outnumber_the_open_ones(warehouse, monkeypatch):
    """A DELETE only masks rows; once masked rows outnumber the live ones, the pass rewrites the
    open-sessions table with the live rows only, so it never grows with history."""
    import pyarrow as pa

    import evcharging.warehouse.load as load_module
    from evcharging.warehouse.schema import ensure_tables

    monkeypatch.setattr(load_module, "COMPACT_OPEN_SESSIONS_MIN_ROWS", 1_000)
    on_disk = (f"SELECT sum(rows) FROM system.parts WHERE database = '{DB}' AND table = 'session_events_open' "
               "AND active")
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        _open_sessions(wh, sessions=10, events_each=400)  # 4,000 rows
        assert load_module.close_sessions(wh, DB, pa.array(["cs-0", "cs-1"])) is None  # 3,200 live of 4,000
        assert wh.query_rows(on_disk)[0][0] == 4_000
        closing = pa.array([f"cs-{i}" for i in range(2, 9)])
        assert load_module.close_sessions(wh, DB, closing) == (4_000, 400)  # only cs-9 is open
        assert wh.query_rows(on_disk)[0][0] == 400
        assert wh.query_rows(f"SELECT DISTINCT session_id FROM {qualified(DB, 'session_events_open')}") == [("cs-9",)]


def test_a_pass_reads_its_events_in_chunks_of_whole_sessions(lake, warehouse, spark, monkeypatch):
    """A pass over more events than MAX_EVENTS_PER_CHUNK summarises them in several Spark calls of
    whole sessions, one chunk in memory at a time; every session is written once, exactly as one
    call would write it."""
    import evcharging.warehouse.load as load_module

    monkeypatch.setattr(load_module, "MAX_EVENTS_PER_CHUNK", 8)
    calls = []
    summarise = load_module.summarise_sessions
    monkeypatch.setattr(load_module, "summarise_sessions",
                        lambda s, events, commit: calls.append(events.num_rows) or summarise(s, events, commit))
    lengths = {f"ch-{i}": n for i, n in enumerate((6, 3, 5, 4, 7, 2))}  # 27 events
    rows = [e for i, (sid, n) in enumerate(lengths.items())
            for e in session_events(sid, n, run_id="ch", first_offset=100 * i)]
    commit = lake.commit(rows, "six sessions")
    with warehouse.connect() as wh:
        lake.start_warehouse_at_base(wh, DB)
        load_lake_commit(wh, DB, None, lake.lakefs, commit)
    report = sessionize_pending(warehouse.connect, DB, spark)
    assert report.commits == [commit] and report.sessions_loaded == 6
    assert len(calls) >= 2 and sum(calls) == 27  # ceil(27 / 8) = 4 chunks by hash, none split, none lost
    with warehouse.connect() as wh:
        sessions = wh.query_rows(f"SELECT session_id, event_count FROM {qualified(DB, 'fact_charging_sessions')} "
                                 "ORDER BY session_id")  # no FINAL: a session written twice would show
        still_open = wh.query_rows(f"SELECT count() FROM {qualified(DB, 'session_events_open')}")[0][0]
    assert sessions == sorted(lengths.items())
    assert still_open == 0  # every chunk's sessions were closed
