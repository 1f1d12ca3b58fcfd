"""The stream's Spark classification agrees with the contract: valid events pass untouched and
typed, each kind of malformed record is quarantined with the contract's reason and its raw bytes,
and the fields of a newer producer are rescued as JSON with their types instead of rejected."""

from __future__ import annotations

import json

from simulator.events import SessionEventEncoder, validate

ENCODER = SessionEventEncoder("run-1", "sess-1", "EVS00001", "EVS00001-1", "V000001", "tesla-model-3", "CCS", 12.5)


def _good(seq: int = 0, event_type: str = "charging_progress", end_reason: str | None = None) -> bytes:
    return ENCODER.encode(event_type, seq, 1767600000000 + seq * 60000, 50.0, 1.25, 40.5, end_reason)


def _mutate(change, separators: tuple[str, str] | None = None) -> bytes:
    event = json.loads(_good())
    change(event)
    return json.dumps(event, separators=separators).encode()


def _compact(change) -> bytes:
    """The change in the reference encoding's shape (keys in order, no spaces): these records meet
    the one-parse test (``canonical_json_pattern``) before any diagnosis, so it must turn them down."""
    return _mutate(change, (",", ":"))


MALFORMED = {
    "bad json": (b'{"event_id": "x", ', "not a JSON object"),
    "json array": (b"[1, 2, 3]", "not a JSON object"),
    "text after the object": (_good() + b" trailing", "not a JSON object"),
    "number as string": (_mutate(lambda e: e.update(power_kw="50.0")), "power_kw: expected float"),
    "id as number": (_mutate(lambda e: e.update(station_id=17)), "station_id: expected string"),
    "unknown event type": (_mutate(lambda e: e.update(event_type="session_paused")),
                           "unknown event_type session_paused"),
    "missing event id": (_mutate(lambda e: e.pop("event_id")), "missing field event_id"),
    "null session id": (_mutate(lambda e: e.update(session_id=None)), "session_id is null"),
    "bad timestamp": (_mutate(lambda e: e.update(event_time="2026-01-05 08:00:00")), "event_time: expected timestamp"),
    "extra field with a type error": (_mutate(lambda e: e.update(colour="red", soc_pct="full")),
                                      "soc_pct: expected float"),
    "contract version 0": (_mutate(lambda e: e.update(contract_version=0)), "contract_version 0 is not a version"),
    "soc above 100": (_mutate(lambda e: e.update(soc_pct=101.0)), "soc_pct out of 0-100"),
    "float seq": (_mutate(lambda e: e.update(seq=1.5)), "seq: expected int"),
    "compact: number as string": (_compact(lambda e: e.update(power_kw="50.0")), "power_kw: expected float"),
    "compact: id as number": (_compact(lambda e: e.update(station_id=17)), "station_id: expected string"),
    "compact: null session id": (_compact(lambda e: e.update(session_id=None)), "session_id is null"),
    "compact: float seq": (_compact(lambda e: e.update(seq=1.5)), "seq: expected int"),
    "compact: number as time": (_compact(lambda e: e.update(event_time=1767600000000)), "event_time: expected timestamp"),
    "compact: missing end_reason": (_compact(lambda e: e.pop("end_reason")), "missing field end_reason"),
    "compact: soc above 100": (_compact(lambda e: e.update(soc_pct=101.0)), "soc_pct out of 0-100"),
    "compact: end_reason on progress": (_compact(lambda e: e.update(end_reason="fault")),
                                        "end_reason is set on a non-final event"),
    "compact: escaped quote in an id": (_compact(lambda e: e.update(vehicle_id='V"1', soc_pct=-1.0)),
                                        "soc_pct out of 0-100"),
}


def _kafka_frame(spark, values: list[bytes]):
    from datetime import datetime

    rows = [(b"k", v, "topic", 0, i, datetime(2026, 1, 1)) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp")


def test_the_contract_itself_rejects_each_malformed_case():
    for name, (value, _) in MALFORMED.items():
        try:
            assert validate(json.loads(value)), name
        except json.JSONDecodeError:
            pass


def test_valid_events_are_kept_typed_and_complete(spark):
    from evcharging.transforms.ingest import classify_records, quarantine_rows, valid_events

    values = [_good(0, "session_started"), _good(1), _good(2, "session_ended", "target_soc")]
    classified = classify_records(_kafka_frame(spark, values))
    rows = valid_events(classified).orderBy("seq").collect()
    assert quarantine_rows(classified).count() == 0
    assert [r.seq for r in rows] == [0, 1, 2]
    first = rows[0].asDict()
    original = json.loads(values[0])
    for key in ("event_id", "station_id", "power_kw", "energy_kwh", "soc_pct", "wait_s", "end_reason"):
        assert first[key] == original[key], key
    assert first["event_time"].isoformat() == "2026-01-05T08:00:00"
    assert str(first["event_date"]) == "2026-01-05"
    assert (first["kafka_partition"], first["kafka_offset"]) == (0, 0)


def test_each_malformed_kind_is_quarantined_with_its_reason_and_raw_bytes(spark):
    from evcharging.transforms.ingest import classify_records, quarantine_rows, valid_events

    values = [v for v, _ in MALFORMED.values()] + [_good(5)]
    classified = classify_records(_kafka_frame(spark, values))
    quarantined = {r.kafka_offset: r for r in quarantine_rows(classified).collect()}
    assert valid_events(classified).count() == 1
    assert len(quarantined) == len(MALFORMED)
    for offset, (name, (value, reason)) in enumerate(MALFORMED.items()):
        row = quarantined[offset]
        assert reason in row.reason, (name, row.reason)
        assert bytes(row.value) == value, name


def test_unknown_fields_are_rescued_not_rejected(spark):
    from evcharging.transforms.ingest import classify_records, quarantine_rows, valid_events

    newer = _mutate(lambda e: e.update(contract_version=2, firmware="1.2.3", retries=2, tariff={"eur": [0.3, None]}))
    spaced = json.dumps({**json.loads(_good(1)), "firmware": "9"}, indent=1).encode()  # not in contract order
    appended = _compact(lambda e: e.update(firmware=None))  # the reference shape, one key more
    escaped = _compact(lambda e: e.update(vehicle_id='V"1'))  # valid, not matched by the plain test
    classified = classify_records(_kafka_frame(spark, [_good(0), newer, spaced, appended, escaped]))
    assert quarantine_rows(classified).count() == 0
    rows = {r.kafka_offset: r for r in valid_events(classified).collect()}
    assert rows[0].rescued_fields is None
    assert json.loads(rows[1].rescued_fields) == {"firmware": "1.2.3", "retries": 2, "tariff": {"eur": [0.3, None]}}
    assert rows[1].contract_version == 2 and rows[1].power_kw == 50.0
    assert json.loads(rows[2].rescued_fields) == {"firmware": "9"}
    assert json.loads(rows[3].rescued_fields) == {"firmware": None}
    assert rows[4].rescued_fields is None and rows[4].vehicle_id == 'V"1'
