"""Copies of events are told apart from conflicts: an exact copy (same id, same content, wherever
it meets its original) is dropped, the same id with other content is a conflict with its reason,
and a batch without repeats is left alone. The same holds for a reading (session_id, seq) re-sent
under another event id: dropped when only the id differs, a conflict naming both ids otherwise;
the event kept is the first arrival whatever order the rows come in."""

from __future__ import annotations

import json

import pandas as pd

from evcharging.audit.copies import (
    CONFLICT_IN_BATCH,
    CONFLICT_WITH_MAIN,
    READING_CONFLICT_IN_BATCH,
    READING_CONFLICT_WITH_MAIN,
    find_copies,
    reason_kind,
)
from evcharging_tests.factories import session_events


def _frame(raw: list[bytes], first_offset: int = 0) -> pd.DataFrame:
    frame = pd.DataFrame([json.loads(r) for r in raw])
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["rescued_fields"] = None
    frame["kafka_partition"] = 0
    frame["kafka_offset"] = range(first_offset, first_offset + len(frame))
    return frame


def test_a_batch_without_repeats_has_no_copies():
    copies = find_copies(_frame(session_events("r", "s1")), pd.DataFrame())
    assert copies.empty


def test_an_exact_copy_in_the_same_batch_is_dropped_and_the_first_arrival_kept():
    events = _frame(session_events("r", "s1") + session_events("r", "s1")[:2])
    copies = find_copies(events, pd.DataFrame())
    assert list(copies.duplicates) == [5, 6] and copies.conflicts.empty
    assert len(copies.drop_from(events)) == 5 and copies.drop_from(events)["event_id"].is_unique


def test_the_same_id_with_other_content_in_the_batch_is_a_conflict():
    original = session_events("r", "s1")
    changed = session_events("r", "s1", power_kw=22.0)[3:4]
    copies = find_copies(_frame(original + changed), pd.DataFrame())
    assert copies.duplicates.empty and copies.conflicts.to_dict() == {5: CONFLICT_IN_BATCH}


def test_copies_of_events_on_main_are_dropped_and_changed_ones_conflict():
    main = _frame(session_events("r", "s1"))
    main["event_time"] = main["event_time"].dt.tz_localize(None).dt.as_unit("us")  # as read back from the lake
    again = _frame(session_events("r", "s1")[:3] + session_events("r", "s1", power_kw=50.0)[3:], first_offset=100)
    copies = find_copies(again, main)
    assert list(copies.duplicates) == [0, 1, 2]
    assert copies.conflicts.to_dict() == {3: CONFLICT_WITH_MAIN, 4: CONFLICT_WITH_MAIN}


def test_rescued_fields_are_part_of_the_content():
    first, second = _frame(session_events("r", "s1")[:1]), _frame(session_events("r", "s1")[:1], first_offset=1)
    second["rescued_fields"] = '{"firmware":"1.2.3"}'
    copies = find_copies(pd.concat([first, second], ignore_index=True), pd.DataFrame())
    assert copies.conflicts.to_dict() == {1: CONFLICT_IN_BATCH}


def _new_ids(raw: list[bytes], prefix: str = "f") -> list[bytes]:
    """The same events under new event ids, as a producer that makes new ids on retry sends them."""
    return [json.dumps({**json.loads(r), "event_id": f"{prefix}{i:031x}"}).encode() for i, r in enumerate(raw)]


def test_a_reading_resent_under_a_new_id_in_the_batch_is_dropped_and_the_first_arrival_kept():
    original = session_events("r", "s1")
    events = _frame(original + _new_ids(original[1:3]))
    copies = find_copies(events, pd.DataFrame())
    assert list(copies.resent) == [5, 6] and copies.duplicates.empty and copies.quarantined.empty
    kept = copies.drop_from(events)
    assert list(kept["event_id"]) == [json.loads(e)["event_id"] for e in original]
    # A replay delivers the rows in another order: the lower Kafka offset is still the one kept.
    shuffled = events.iloc[::-1]
    assert list(find_copies(shuffled, pd.DataFrame()).resent) == [5, 6]


def test_a_reading_with_other_content_in_the_batch_is_a_conflict_naming_both_ids():
    original = session_events("r", "s1")
    changed = _new_ids(session_events("r", "s1", power_kw=22.0)[3:4])
    copies = find_copies(_frame(original + changed), pd.DataFrame())
    [(label, reason)] = copies.reading_conflicts.items()
    assert label == 5 and reason_kind(reason) == READING_CONFLICT_IN_BATCH
    assert json.loads(original[3])["event_id"] in reason and json.loads(changed[0])["event_id"] in reason
    assert copies.dropped.empty and copies.conflicts.empty


def test_readings_of_main_under_new_ids_are_dropped_and_changed_ones_conflict():
    main = _frame(session_events("r", "s1"))
    main["event_time"] = main["event_time"].dt.tz_localize(None).dt.as_unit("us")  # as read back from the lake
    again = _frame(_new_ids(session_events("r", "s1")[:2] + session_events("r", "s1", power_kw=50.0)[2:3]), 100)
    copies = find_copies(again, main)
    assert list(copies.resent) == [0, 1] and copies.duplicates.empty
    [(label, reason)] = copies.reading_conflicts.items()
    assert label == 2 and reason_kind(reason) == READING_CONFLICT_WITH_MAIN
    assert main["event_id"].iloc[2] in reason and again["event_id"].iloc[2] in reason


def test_an_id_repeat_is_resolved_by_id_before_its_reading():
    original = session_events("r", "s1")
    changed = session_events("r", "s1", power_kw=22.0)[:1]  # the same id and reading, other content
    copies = find_copies(_frame(original + original[:1] + changed), pd.DataFrame())
    assert list(copies.duplicates) == [5] and copies.conflicts.to_dict() == {6: CONFLICT_IN_BATCH}
    assert copies.resent.empty and copies.reading_conflicts.empty
