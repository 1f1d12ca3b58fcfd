"""The event contract: the fast session encoder writes exactly what the reference encoder writes,
events round-trip, and validate() names every kind of malformed event."""

from __future__ import annotations

import pytest

from simulator.events import (
    CONTRACT_VERSION, END_REASONS, EVENT_TYPES, FIELD_KINDS, FIELD_NAMES, FIELDS, RunManifest, rescued_fields,
    SessionEventEncoder, decode, encode, event_id, format_event_time, parse_event_time, validate,
)


def good_event(**changes) -> dict:
    event = {
        "contract_version": CONTRACT_VERSION, "event_id": event_id("run-1", "run-1-0000001", 3),
        "event_type": "charging_progress", "run_id": "run-1", "session_id": "run-1-0000001", "seq": 3,
        "event_time": "2026-01-05T08:00:00.000Z", "station_id": "EVS00001", "charger_id": "EVS00001-2",
        "vehicle_id": "V000001", "vehicle_model_id": "tesla-model-3", "connector_type": "CCS", "power_kw": 49.5, "energy_kwh": 2.475,
        "soc_pct": 41.25, "wait_s": 12.5, "end_reason": None,
    }
    event.update(changes)
    return event


def test_fields_follow_the_documented_order_and_kinds():
    assert FIELD_NAMES == (
        "contract_version", "event_id", "event_type", "run_id", "session_id", "seq", "event_time",
        "station_id", "charger_id", "vehicle_id", "vehicle_model_id", "connector_type", "power_kw", "energy_kwh", "soc_pct",
        "wait_s", "end_reason")
    assert {f.kind for f in FIELDS} <= set(FIELD_KINDS)
    assert [f.name for f in FIELDS if f.nullable] == ["end_reason"]
    assert all(f.doc for f in FIELDS)
    assert EVENT_TYPES == ("session_started", "charging_progress", "session_ended")
    assert END_REASONS == ("target_soc", "departure", "fault", "station_closing")


def test_a_good_event_round_trips_and_is_valid():
    event = good_event()
    data = encode(event)
    assert b" " not in data.replace(b", ", b"")  # compact
    assert decode(data) == event
    assert validate(decode(data)) == []
    assert list(decode(data)) == list(FIELD_NAMES)  # key order is stable


@pytest.mark.parametrize("event_type, end_reason", [
    ("session_started", None), ("charging_progress", None), ("session_ended", "fault")])
def test_session_encoder_is_byte_identical_to_encode(event_type, end_reason):
    encoder = SessionEventEncoder("run-1", "run-1-0000001", "EVS00001", "EVS00001-2", "V000001", "tesla-model-3", "CCS",
                                  12.5)
    fast = encoder.encode(event_type, 3, 1_767_600_000_000, 49.5, 2.475, 41.25, end_reason)
    assert fast == encode(good_event(event_type=event_type, end_reason=end_reason))


def test_session_encoder_escapes_unusual_ids_like_json():
    odd = dict(station_id='EVS "1"', charger_id="back\\slash-1", vehicle_id="Zoë", vehicle_model_id="é-model",
               connector_type="tab\there")
    encoder = SessionEventEncoder("run-1", "run-1-0000001", *odd.values(), 0.0)
    fast = encoder.encode("session_started", 0, 1_767_600_000_000, 11.0, 0.0, 20.0)
    reference = encode(good_event(**odd, event_type="session_started", seq=0, power_kw=11.0, energy_kwh=0.0,
                                  soc_pct=20.0, wait_s=0.0, event_id=event_id("run-1", "run-1-0000001", 0)))
    assert fast == reference


def test_event_ids_are_deterministic_and_distinct():
    assert event_id("r", "s", 1) == event_id("r", "s", 1)
    assert len({event_id("r", "s", n) for n in range(1000)} | {event_id("r2", "s", 1)}) == 1001


def test_event_time_format():
    assert format_event_time(1_767_600_000_000) == "2026-01-05T08:00:00.000Z"
    assert format_event_time(1_767_571_199_999) == "2026-01-04T23:59:59.999Z"
    assert parse_event_time("2026-01-05T08:00:00.123Z").timestamp() == 1_767_600_000.123


@pytest.mark.parametrize("event, reason", [
    ({k: v for k, v in good_event().items() if k != "soc_pct"}, "missing field soc_pct"),
    (good_event(power_kw="49.5"), "power_kw: expected float"),
    (good_event(seq=3.0), "seq: expected int"),
    (good_event(seq=True), "seq: expected int"),
    (good_event(station_id=17), "station_id: expected string"),
    (good_event(event_time="2026-01-05 08:00:00"), "event_time: expected timestamp"),
    (good_event(event_time="2026-01-05T08:00:00Z"), "event_time: expected timestamp"),
    (good_event(vehicle_id=None), "vehicle_id is null"),
    (good_event(event_type="plugged_in"), "unknown event_type"),
    (good_event(contract_version=0), "contract_version 0 is not a version"),
    (good_event(event_type="session_ended"), "session_ended needs an end_reason"),
    (good_event(event_type="session_ended", end_reason="boredom"), "session_ended needs an end_reason"),
    (good_event(end_reason="fault"), "end_reason is set on a charging_progress"),
    (good_event(soc_pct=100.5), "soc_pct out of 0-100"),
    (good_event(energy_kwh=-1.0), "energy_kwh is negative"),
    (good_event(seq=-1), "seq is negative"),
    (good_event(power_kw=float("nan")), "power_kw: expected float"),
    ([1, 2], "event is not an object"),
])
def test_validate_names_each_kind_of_malformed_event(event, reason):
    reasons = validate(event)
    assert any(reason in r for r in reasons), reasons


def test_decode_rejects_non_objects():
    with pytest.raises(ValueError):
        decode(b"[1, 2]")
    with pytest.raises(ValueError):
        decode(b"{not json")


def test_manifest_round_trips():
    manifest = RunManifest(run_id="run-1", seed=5, counts={"session_started": 2, "charging_progress": 7,
                                                           "session_ended": 2},
                           events_total=11, sessions_started=2, sessions_completed=2, interrupted=True)
    assert RunManifest.from_json(manifest.to_json()) == manifest


def test_a_newer_producer_is_valid_and_its_new_fields_are_rescued():
    """A producer on a newer contract adds an optional field: still valid, the field kept aside."""
    event = good_event(contract_version=CONTRACT_VERSION + 1, firmware="1.2.3", tariff={"eur_kwh": 0.39})
    assert validate(event) == []
    assert rescued_fields(event) == {"firmware": "1.2.3", "tariff": {"eur_kwh": 0.39}}
    assert rescued_fields(good_event()) == {}


def test_fields_added_after_version_1_are_nullable():
    """An older producer never sends a later field: it must be allowed to be absent (null)."""
    assert all(f.nullable for f in FIELDS if f.optional)
