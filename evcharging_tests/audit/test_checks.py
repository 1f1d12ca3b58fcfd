"""Each audit rule passes a clean batch and fails, naming the reason, on the fault it exists for; a
blocking failure says what to do; the quarantine share blocks only over enough records."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from evcharging.audit.checks import CHECK_NAMES, REMEDY, SEVERITY, WARN, audit, check_quarantine_share
from evcharging_tests.factories import session_events

NOW = datetime(2026, 1, 6, tzinfo=UTC)


def _frame(raw: list[bytes]) -> pd.DataFrame:
    rows = [json.loads(r) for r in raw]
    frame = pd.DataFrame(rows)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["kafka_partition"] = 0
    frame["kafka_offset"] = range(len(frame))
    return frame


def _clean() -> pd.DataFrame:
    return _frame(session_events("r1", "s1") + session_events("r1", "s2", station_id="EVS00002"))


def _run(events, **over):
    args = dict(station_ids={"EVS00001", "EVS00002"}, vehicle_model_ids={"tesla-model-3"}, ids_on_main=set(), quarantined=0,
                max_quarantine_share=0.05, now=NOW)
    return {o.name: o for o in audit(events, **{**args, **over})}


def test_a_clean_batch_passes_every_check():
    outcomes = _run(_clean())
    assert [name for name, o in outcomes.items() if not o.passed] == []


@pytest.mark.parametrize("mutate, check, words", [
    (lambda f: f.assign(station_id=f["station_id"].where(f.index != 3, "EVS99999")), "reference_ids_exist",
     "1 unknown station ids, e.g. ['EVS99999']"),
    (lambda f: f.assign(soc_pct=f["soc_pct"].where(f.index != 2, 150.0)), "contract_schema", "soc_pct"),
    (lambda f: f.assign(event_type=f["event_type"].where(f.index != 1, "session_paused")), "contract_schema",
     "session_paused"),
    (lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True), "session_sequences_consistent",
     "repeat a (session_id, seq)"),
    (lambda f: f.assign(energy_kwh=f["energy_kwh"].where(f.index != 3, 0.0)), "session_sequences_consistent",
     "energy_kwh decreases"),
    (lambda f: f.assign(event_time=f["event_time"].where(f.index != 0, pd.Timestamp("1999-01-01", tz="UTC"))),
     "event_times_plausible", "before 2000-01-01"),
])
def test_each_fault_fails_its_check_with_the_reason(mutate, check, words):
    outcome = _run(mutate(_clean()))[check]
    assert not outcome.passed and outcome.blocks
    assert words in outcome.description


def test_events_already_on_main_are_refused():
    events = _clean()
    outcome = _run(events, ids_on_main={events["event_id"].iloc[0]})["no_event_already_on_main"]
    assert outcome.blocks and "1 event ids already on main" in outcome.description


def test_quarantine_share_warns_then_blocks():
    assert check_quarantine_share(100, 0, 0.05).passed
    warn = check_quarantine_share(100, 2, 0.05)
    assert not warn.passed and warn.severity == WARN and not warn.blocks
    assert check_quarantine_share(100, 20, 0.05).blocks


def test_quarantine_share_of_a_small_batch_only_warns():
    small = check_quarantine_share(1, 1, 0.05, min_rows=200)  # one conflict of two records
    assert not small.passed and not small.blocks and "applies from 200 records" in small.description
    assert check_quarantine_share(2100, 900, 0.05, min_rows=200).blocks  # 30 % of thousands
    assert check_quarantine_share(189, 11, 0.05, min_rows=200).blocks  # 200 records are enough


def test_a_blocking_failure_says_what_to_do_and_every_check_its_severity():
    assert set(SEVERITY) == set(REMEDY) == set(CHECK_NAMES)
    share = _run(_clean(), quarantined=900, share_min_rows=200)["quarantine_share"]
    assert share.blocks and "What to do: " in share.description and "publish_without_offending_rows" in share.description
    warned = _run(_clean(), quarantined=1, share_min_rows=200)["quarantine_share"]
    assert not warned.blocks and "What to do" not in warned.description


def test_offending_rows_name_each_row_that_fails_a_row_level_check():
    from evcharging.audit.checks import offending_rows

    events = _frame(session_events("r1", "s1") + session_events("r1", "s2", station_id="EVS09999")
                    + session_events("r1", "s3", vehicle_model_id="no-such-car", n=2))
    reasons = offending_rows(events, station_ids={"EVS00001"}, vehicle_model_ids={"tesla-model-3"}, now=NOW)
    assert sorted(reasons.index) == list(range(5, 12))
    assert set(reasons.loc[5:9]) == {"reference_ids_exist: unknown station_id"}
    assert set(reasons.loc[10:11]) == {"reference_ids_exist: unknown vehicle_model_id"}
    assert offending_rows(_clean(), station_ids={"EVS00001", "EVS00002"}, vehicle_model_ids={"tesla-model-3"},
                          now=NOW).empty
