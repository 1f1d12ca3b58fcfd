"""Reconciliation from where the last one stopped (real chDB, no other service): a second pass with
nothing new compares nothing and still passes; a new load is compared with everything before it (an
offset published again is found), and a difference stays reported until it is resolved."""

from __future__ import annotations

import time

from evcharging.warehouse.load import record_load
from evcharging.warehouse.reconcile_state import reconcile_since_last
from evcharging.warehouse.schema import ensure_tables, qualified
from evcharging_tests.warehouse.conftest import DB
from evcharging_tests.warehouse.test_reconcile import COUNTS, TOPIC, _load, _manifest


def _record(wh, load, counts: dict[str, int], sessions: int) -> None:
    record_load(wh, DB, load)
    for kind, n in counts.items():
        wh.command(f"INSERT INTO {qualified(DB, 'load_counts')} VALUES ('{load.commit}', 'r1', '{kind}', {n}, {n}, "
                   "now64(3, 'UTC'))")
    wh.command(f"INSERT INTO {qualified(DB, 'session_counts')} VALUES ('{load.commit}', 'r1', {sessions}, now64(3, 'UTC'))")
    time.sleep(0.01)  # loaded_at orders the loads


def test_each_pass_takes_the_loads_since_the_last_and_keeps_what_is_wrong(warehouse):
    manifests = {"r1": _manifest()}
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        _record(wh, _load("c1"), COUNTS, 2)
        first = reconcile_since_last(wh, DB, manifests, TOPIC)
        second = reconcile_since_last(wh, DB, manifests, TOPIC)
        # A replay: offsets 4–5 of partition 0 published again, two progress events more for r1.
        _record(wh, _load("c2", ranges={f"{TOPIC}:0": [[4, 6]]}, events=2), {"charging_progress": 2}, 0)
        third = reconcile_since_last(wh, DB, manifests, TOPIC)
        fourth = reconcile_since_last(wh, DB, manifests, TOPIC)
    assert first.passed and first.loads == 1 and [r["status"] for r in first.runs] == ["exact"]
    assert second.passed and second.loads == 0 and [r["status"] for r in second.runs] == ["exact (checked before)"]
    for later in (third, fourth):  # the second load is compared with the first's offsets, and it stays reported
        assert not later.passed
        measures = [d.measure for d in later.differences]
        assert any(m.startswith("offsets published twice") for m in measures), measures
        assert "warehouse charging_progress events" in measures, measures
    assert third.loads == 1 and fourth.loads == 0


def test_a_backlog_of_thousands_of_loads_is_reconciled_in_one_pass(warehouse):
    """The job stopped for days: 8,000 loads (lakeFS-length commit ids) since the last pass. Naming
    them in the SQL would pass ClickHouse's max_query_size (256 KiB); the pass covers them all."""
    manifests = {"r1": _manifest()}
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        _record(wh, _load("c1"), COUNTS, 2)
        assert reconcile_since_last(wh, DB, manifests, TOPIC).passed
        time.sleep(0.01)
        wh.command(f"INSERT INTO {qualified(DB, 'load_log')} (commit_id, previous_commit, files, events_read, "
                   "events_loaded, sessions_loaded, loaded_at, batches, kafka_records, kafka_ranges, lake_events, "
                   "quarantined, dropped) SELECT lower(hex(SHA256(toString(number)))), '', 0, 0, 0, 0, "
                   "now64(3, 'UTC') + toIntervalMillisecond(number), 0, 0, '{}', 0, 0, 0 FROM numbers(8000)")
        backlog = reconcile_since_last(wh, DB, manifests, TOPIC)
    assert backlog.passed and backlog.loads == 8000, [str(d) for d in backlog.differences]
