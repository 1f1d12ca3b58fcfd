"""Sessionizing hand-built events: a session split across two batches or two files is one row with
the right totals; an unfinished session is not a fact and is completed by a later batch;
duplicate events collapse; a session with a gap in its sequence waits for the missing event."""

from __future__ import annotations

from datetime import timedelta

import pytest

from evcharging.transforms.sessions import SESSION_COLUMNS, charging_sessions, clean_events
from evcharging_tests.warehouse.events import T0, frame, session_events

N, STEP = 6, 60.5


def _one(rows):
    assert len(rows) == 1, rows
    return rows[0].asDict()


def _expected(events):
    return dict(energy=events[-1]["energy_kwh"], duration=STEP * (N - 1), peak=max(e["power_kw"] for e in events))


def test_a_session_split_across_two_batches_is_one_row_with_the_right_totals(spark):
    events = session_events("s1", N)
    first, second = frame(spark, events[:3]), frame(spark, events[3:])
    assert charging_sessions(first).count() == 0  # unfinished: not a fact yet
    row = _one(charging_sessions(first.unionByName(second)).collect())
    want = _expected(events)
    assert row["event_count"] == N
    assert row["energy_kwh"] == pytest.approx(want["energy"])
    assert row["duration_s"] == pytest.approx(want["duration"])  # exact to the millisecond
    t0 = T0.replace(tzinfo=None)  # Spark hands back naive datetimes in its session time zone, UTC
    assert row["start_time"] == t0 and row["end_time"] == t0 + timedelta(seconds=STEP * (N - 1))
    assert row["peak_power_kw"] == want["peak"]
    assert row["avg_power_kw"] == pytest.approx(want["energy"] / (want["duration"] / 3600))
    assert (row["start_soc_pct"], row["end_soc_pct"]) == (20.0, 20.0 + N - 1)
    assert row["end_reason"] == "target_soc" and row["wait_s"] == 30.0
    assert row["queued_at"] == t0 - timedelta(seconds=30)
    assert row["vehicle_model_id"] == "tesla-model-3"
    assert tuple(row) == SESSION_COLUMNS


def test_a_session_split_across_two_files_is_one_row(spark, tmp_path):
    events = session_events("s2", N)
    frame(spark, events[:2]).write.parquet(str(tmp_path / "a"))
    frame(spark, events[2:]).write.parquet(str(tmp_path / "b"))
    both = spark.read.parquet(str(tmp_path / "a"), str(tmp_path / "b"))
    row = _one(charging_sessions(both).collect())
    assert row["event_count"] == N and row["energy_kwh"] == pytest.approx(events[-1]["energy_kwh"])


def test_an_unfinished_session_is_completed_by_a_later_batch(spark):
    open_ = session_events("s3", 4, ended=False)
    assert charging_sessions(frame(spark, open_)).count() == 0
    full = session_events("s3", 5)
    row = _one(charging_sessions(frame(spark, open_ + full[4:])).collect())
    assert row["event_count"] == 5 and row["end_reason"] == "target_soc"


def test_duplicates_collapse_and_the_lowest_kafka_offset_wins(spark):
    events = session_events("s4", N)
    replayed = [{**e, "kafka_offset": e["kafka_offset"] + 1000} for e in events]
    df = frame(spark, events + replayed[1:4])
    cleaned = clean_events(df)
    assert cleaned.count() == N
    assert max(r.kafka_offset for r in cleaned.collect()) == N - 1
    row = _one(charging_sessions(df).collect())
    assert row["event_count"] == N and row["energy_kwh"] == pytest.approx(events[-1]["energy_kwh"])


def test_a_session_with_a_missing_event_is_not_a_fact(spark):
    events = session_events("s5", N)
    assert charging_sessions(frame(spark, events[:2] + events[3:])).count() == 0


def test_sessions_are_independent(spark):
    a, b = session_events("a", 3), session_events("b", 4, station_id="EVS00002", ended=False)
    rows = charging_sessions(frame(spark, a + b)).collect()
    assert [r.session_id for r in rows] == ["a"]
