"""The warehouse on chDB, loading real lake files from a lakeFS test branch: the DDL creates every
table (and is re-runnable); ClickHouse loads the event files a commit added with every value intact
(event_time exact to the ms from Spark's Parquet timestamps), in several INSERTs when there are many
files; loads keyed by a lakeFS commit are idempotent — loading the same commit twice, or a
duplicate event in a later commit, leaves the same rows, and a load killed before it was recorded
is finished first, never inserted again, when main moved on meanwhile; a session split across two loads becomes
one fact row once it ends; the session phase hands Spark the warehouse's events as Arrow with the
types it expects; and the lakeFS credentials never show in a load error."""

from __future__ import annotations

import pytest

from evcharging.contracts import lake_event_columns
from evcharging.warehouse import load as load_module
from evcharging.warehouse.load import (
    EventLoadError, _session_events_sql, event_insert_sql, interrupted_load, last_loaded_commit, load_event_files,
    load_lake_commit, load_log, loaded, run_masking_secrets, sessionize, stage_and_append,
)
from evcharging.warehouse.schema import CHDB_MAX_MERGE_BYTES, TABLES, ensure_tables, qualified
from evcharging_tests.warehouse.conftest import DB
from evcharging_tests.warehouse.events import T0, session_events


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


def test_on_chdb_the_tables_loads_append_to_cap_one_merge_and_closing_lets_merges_finish(warehouse):
    """chDB merges only while a process holds it: a merge must fit in a step (the cap), and closing
    waits for the merges under way instead of cancelling them (they would start over next time)."""
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        created = dict(wh.query_rows(f"SELECT name, create_table_query FROM system.tables WHERE database = '{DB}'"))
        table = qualified(DB, "merge_probe")
        wh.command(f"CREATE TABLE {table} (k UInt64, v String) ENGINE = MergeTree ORDER BY k")
        for i in range(12):  # twelve parts: enough for the merge selector to pick a merge at once
            wh.command(f"INSERT INTO {table} SELECT number + {i * 200_000}, toString(rand()) FROM numbers(200000)")
    cap = f"max_bytes_to_merge_at_max_space_in_pool = {CHDB_MAX_MERGE_BYTES}"
    assert cap in created["fact_charging_events"] and cap in created["session_events_open"]
    assert cap not in created["load_log"]
    with warehouse.connect() as wh:
        parts = wh.query_rows(f"SELECT count() FROM system.parts WHERE database = '{DB}' AND table = 'merge_probe' "
                              "AND active")[0][0]
    assert parts < 12, f"{parts} parts: the merges were cancelled when the session closed"


def test_a_new_contract_field_is_added_to_an_existing_table(warehouse):
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        wh.command(f"ALTER TABLE {qualified(DB, 'fact_charging_events')} DROP COLUMN vehicle_model_id")
        ensure_tables(wh, DB)
        columns = [r[0] for r in wh.query_rows(
            f"SELECT name FROM system.columns WHERE database = '{DB}' AND table = 'fact_charging_events' ORDER BY position")]
    assert columns.index("vehicle_model_id") == columns.index("vehicle_id") + 1


def test_every_value_of_the_lake_files_arrives_intact(lake, warehouse):
    rows = session_events("v", 4, step_s=60.5) + session_events("w", 2, ended=False, partition=3, first_offset=7)
    commit = lake.commit(rows)
    paths = lake.added(commit)
    columns = lake_event_columns()
    sql = event_insert_sql(DB, lake.lakefs, commit, paths)
    assert sql.count(" FROM s3(") == len(paths) and "*" not in "".join(paths) and f"/{commit}/" in sql
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        load_event_files(wh, DB, lake.lakefs, commit, paths)
        stored = wh.query_arrow(
            f"SELECT {', '.join(columns)}, toUnixTimestamp64Milli(event_time) AS ms, toTypeName(event_time) AS type, "
            f"load_commit FROM {qualified(DB, 'fact_charging_events')} ORDER BY event_id").to_pylist()
    expected = sorted(rows, key=lambda r: r["event_id"])
    assert [{c: r[c] for c in columns} for r in stored] == [{c: r[c] for c in columns} for r in expected]
    # ms exact: T0 is 08:00:00.123, events 60.5 s apart fall on .123 and .623
    assert [r["ms"] for r in stored] == [round(r["event_time"].timestamp() * 1000) for r in expected]
    assert {r["ms"] % 1000 for r in stored} == {123, 623}
    assert {(r["type"], r["load_commit"]) for r in stored} == {("DateTime64(3, 'UTC')", commit)}


def test_many_files_are_loaded_in_several_inserts(lake, warehouse):
    rows = [r for i in range(6)
            for r in session_events(f"m{i}", 3, start=T0.replace(day=5 + i % 3), first_offset=10 * i)]
    commit = lake.commit(rows)
    paths = lake.added(commit)
    assert len(paths) >= 3  # a directory per event date at least
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        load_event_files(wh, DB, lake.lakefs, commit, paths, files_per_insert=2)
        rows_ids_days = wh.query_rows(f"SELECT count(), uniqExact(event_id), uniqExact(toDate(event_time)) "
                                      f"FROM {qualified(DB, 'fact_charging_events')}")[0]
    assert tuple(int(v) for v in rows_ids_days) == (18, 18, 3)  # no file dropped or read twice at a chunk edge


def test_loads_are_idempotent_and_complete_split_sessions(lake, warehouse, spark):
    a, b = session_events("a", 6), session_events("b", 3, station_id="EVS00002", first_offset=100)
    c1 = lake.commit(a[:4] + b, "a is still charging")
    c2 = lake.commit(a[4:] + [{**a[1], "kafka_offset": 500}], "the rest of a, and a replayed duplicate")
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        assert last_loaded_commit(wh, DB) is None
        lake.start_warehouse_at_base(wh, DB)
        first = load_lake_commit(wh, DB, spark, lake.lakefs, c1)
        assert (first.previous_commit, first.events_read, first.events_loaded, first.sessions_loaded) == \
            (lake.base, 7, 7, 1)
        assert first.files == len(lake.added(c1)) and first.events_seconds > 0 and first.sessions_seconds > 0
        after_one = _snapshot(wh)
        assert [s[0] for s in after_one[1]] == ["b"]  # only b is complete

        # The load's INSERT again (as after a crash before load_log): deduplicated, no copy even
        # without FINAL; b was summarised and closed, a is still open: nothing to summarise.
        assert stage_and_append(wh, DB, lake.lakefs, c1, lake.added(c1), f"{lake.base}..{c1}").events == 7
        assert wh.query_rows(f"SELECT count() FROM {qualified(DB, 'fact_charging_events')}") == [(7,)]
        assert sessionize(wh, DB, spark, c1) == 0
        assert _snapshot(wh) == after_one
        assert load_lake_commit(wh, DB, spark, lake.lakefs, c1).already_loaded  # and through load_log: a no-op

        second = load_lake_commit(wh, DB, spark, lake.lakefs, c2)
        assert (second.previous_commit, second.events_loaded, second.sessions_loaded) == (c1, 3, 1)
        events, sessions = _snapshot(wh)
        assert len(events) == 9  # 6 + 3, the duplicate collapsed
        assert [(s[0], s[1]) for s in sessions] == [("a", 6), ("b", 3)]
        assert sessions[0][2] == pytest.approx(a[-1]["energy_kwh"])
        assert sessions[0][3] == pytest.approx(60.5 * 5)

        again = load_lake_commit(wh, DB, lambda: pytest.fail("an already-loaded commit starts no Spark"),
                                 lake.lakefs, c2)
        assert again.already_loaded and again.events_loaded == 3
        assert _snapshot(wh) == (events, sessions)
        assert last_loaded_commit(wh, DB) == c2
        assert loaded(wh, DB, c1).already_loaded and loaded(wh, DB, "nope") is None


def test_a_load_killed_before_it_was_recorded_is_finished_first_when_main_moved_on(lake, warehouse, monkeypatch):
    a, b = session_events("a", 4), session_events("b", 3, station_id="EVS00002", first_offset=100)
    c1, c2 = lake.commit(a, "a"), lake.commit(b, "b, merged while the load of a was down")

    def killed(point):
        raise KeyboardInterrupt(point)

    fact, counts = qualified(DB, "fact_charging_events"), qualified(DB, "load_counts")
    with warehouse.connect() as wh:
        lake.start_warehouse_at_base(wh, DB)
        with monkeypatch.context() as patch:  # the load of c1 dies after its INSERT, before load_log
            patch.setattr(load_module, "crashpoint", killed)
            with pytest.raises(KeyboardInterrupt, match="before_load_recorded"):
                load_lake_commit(wh, DB, None, lake.lakefs, c1)
        assert last_loaded_commit(wh, DB) == lake.base and interrupted_load(wh, DB, lake.base) == c1
        assert wh.query_rows(f"SELECT count() FROM {fact}") == [(4,)]

        report = load_lake_commit(wh, DB, None, lake.lakefs, c2)
        # c1 finished under its own token first (its 4 rows not inserted again), then c1..c2.
        assert (report.previous_commit, report.events_loaded) == (c1, 3)
        assert [r.commit for r in load_log(wh, DB)][-2:] == [c1, c2]
        # No FINAL: a second copy must show. load_counts (what reconciliation sums) counts each once.
        assert wh.query_rows(f"SELECT count(), uniqExact(event_id) FROM {fact}") == [(7, 7)]
        assert wh.query_rows(f"SELECT sum(events) FROM {counts} FINAL") == [(7,)]
        assert interrupted_load(wh, DB, c2) is None


def test_the_session_phase_hands_spark_the_types_it_expects(lake, warehouse, spark):
    rows = session_events("t", 3, model="kia-ev6")
    commit = lake.commit(rows)
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        stage_and_append(wh, DB, lake.lakefs, commit, lake.added(commit), "types")
        arrow = wh.query_arrow(_session_events_sql(DB, commit))  # from session_events_open
    types = {f.name: f.dataType.simpleString() for f in spark.createDataFrame(arrow).schema.fields}
    assert arrow.num_rows == 3
    assert types["event_time"] == "timestamp" and types["seq"] == types["kafka_offset"] == "bigint"
    assert types["event_type"] == types["vehicle_model_id"] == types["end_reason"] == "string"  # LowCardinality
    assert types["kafka_partition"] == "int" and types["power_kw"] == "double"
    assert arrow.column("end_reason").null_count == 2
    assert arrow.column("vehicle_model_id").to_pylist() == ["kia-ev6"] * 3
    times = sorted(t.timestamp() for t in arrow.column("event_time").to_pylist())
    assert times == [r["event_time"].timestamp() for r in rows]


def test_a_failed_load_never_shows_the_lakefs_credentials(lake, warehouse):
    commit = lake.base
    secret, key = lake.lakefs.secret_access_key, lake.lakefs.access_key_id
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        with pytest.raises(EventLoadError) as missing:
            load_event_files(wh, DB, lake.lakefs, commit, ["events/event_date=2026-01-05/no-such-file.parquet"])
        # ClickHouse quotes the SQL around a syntax error: that text is masked.
        quoted = f"SELECT * FROM s3('http://127.0.0.1:1/x.parquet', '{key}' '{secret}', 'Parquet')"
        with pytest.raises(EventLoadError) as syntax:
            run_masking_secrets(wh.command, quoted, [secret, key])
    assert "no-such-file.parquet" in str(missing.value)
    assert "[HIDDEN]" in str(syntax.value)
    for error in (missing.value, syntax.value):
        assert secret not in str(error) and key not in str(error)
        assert error.__context__ is None and error.__cause__ is None  # no chained original message
