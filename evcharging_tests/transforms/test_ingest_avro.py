"""Avro records beside JSON in the stream's classification: both encodings of the same events give
the same lake rows, even mixed in one batch; each undecodable record (bad magic byte, unknown schema
id, truncated, a body that is not its schema's) is quarantined with its reason and raw bytes; and a
newer writer's schema is read by the current reader, its new field rescued as JSON."""

from __future__ import annotations

import json

import pytest

from evcharging_tests.transforms.test_ingest_classification import ENCODER, _kafka_frame
from simulator.avro import AvroSessionEventEncoder, avro_schema, decode, encode, load_schemas, wire_header

AVRO = AvroSessionEventEncoder("run-1", "sess-1", "EVS00001", "EVS00001-1", "V000001", "tesla-model-3", "CCS", 12.5)
CALLS = [("session_started", 0, 1767600000000, 50.0, 0.0, 20.0), ("charging_progress", 1, 1767600060000, "50.0", 0.8333, 21.5),
         ("session_ended", 2, 1767600120000, 48.25, 1.6667, 23.0, "target_soc")]
GOOD = AVRO.encode(*CALLS[1])


def _lake_rows(classified):
    from evcharging.transforms.ingest import valid_events

    return sorted((r.asDict() for r in valid_events(classified).drop("kafka_offset").collect()), key=lambda r: r["seq"])


def test_both_encodings_of_the_same_events_give_the_same_lake_rows_in_one_batch(spark):
    from evcharging.transforms.ingest import classify_records, quarantine_rows

    as_json = [ENCODER.encode(*call) for call in CALLS]
    as_avro = [AVRO.encode(*call) for call in CALLS]
    mixed = classify_records(_kafka_frame(spark, [as_json[0], as_avro[1], as_json[2], as_avro[0], as_avro[2], as_json[1]]))
    assert quarantine_rows(mixed).count() == 0
    rows = _lake_rows(mixed)
    assert len(rows) == 6 and rows[0::2] == rows[1::2]  # each event once per encoding, the same row
    assert _lake_rows(classify_records(_kafka_frame(spark, as_avro))) == rows[0::2]
    assert rows[5]["end_reason"] == "target_soc" and rows[0]["rescued_fields"] is None


def _schema_without(name: str) -> dict:
    schema = avro_schema(1)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != name]
    return schema


def _nullable_ids() -> dict:
    schema = avro_schema(1)
    for f in schema["fields"]:
        if f["name"] == "session_id":
            f["type"], f["default"] = ["null", "string"], None
    return schema


EVENT = decode(GOOD)
OLD_WITHOUT_WAIT, NULLABLE_IDS = 8, 9
BAD = {
    "bad magic byte": (b"\x01" + GOOD[1:], "unknown magic byte 0x01: neither Avro (0) nor JSON ('{')"),
    "unknown schema id": (wire_header(7) + GOOD[5:], "unknown Avro schema id 7"),
    "truncated header": (GOOD[:3], "truncated Avro record: 3 bytes, its header alone is 5"),
    "truncated body": (GOOD[:-9], "Avro body of Avro schema id 1 is truncated or not of that schema"),
    "header only": (GOOD[:5], "Avro body of Avro schema id 1 is truncated or not of that schema"),
    "bytes after the body": (GOOD + b"\x02xyz", "Avro body does not match Avro schema id 1: bytes are left after"),
    "a JSON body": (wire_header(1) + ENCODER.encode(*CALLS[1]), "Avro body of Avro schema id 1"),
    "a rule broken": (AVRO.encode("charging_progress", 1, 1767600060000, 50.0, 0.8, 101.0), "soc_pct out of 0-100"),
    "writer lacks a field": (encode({k: v for k, v in EVENT.items() if k != "wait_s"}, OLD_WITHOUT_WAIT,
                                    _schema_without("wait_s")), f"missing field wait_s (Avro schema id {OLD_WITHOUT_WAIT})"),
    "null where the contract has none": (encode({**EVENT, "session_id": None}, NULLABLE_IDS, _nullable_ids()),
                                         "session_id is null"),
}


def test_each_undecodable_avro_record_is_quarantined_with_its_reason_and_raw_bytes(spark):
    from evcharging.transforms.ingest import classify_records, quarantine_rows, valid_events

    schemas = {**load_schemas(), OLD_WITHOUT_WAIT: _schema_without("wait_s"), NULLABLE_IDS: _nullable_ids()}
    values = [v for v, _ in BAD.values()] + [GOOD]
    classified = classify_records(_kafka_frame(spark, values), schemas)
    quarantined = {r.kafka_offset: r for r in quarantine_rows(classified).collect()}
    assert [r.kafka_offset for r in valid_events(classified).collect()] == [len(BAD)]
    assert sorted(quarantined) == list(range(len(BAD)))
    for offset, (name, (value, reason)) in enumerate(BAD.items()):
        assert reason in quarantined[offset].reason, (name, quarantined[offset].reason)
        assert bytes(quarantined[offset].value) == value, name


@pytest.mark.parametrize("position", [3, 17])
def test_a_newer_writer_is_read_by_the_current_reader_and_its_new_field_rescued(spark, position):
    from evcharging.transforms.ingest import classify_records, quarantine_rows

    newer = avro_schema(1)
    newer["doc"] = "contract version 2, as a newer producer has it"
    newer["fields"].insert(position, {"name": "firmware", "type": ["null", "string"], "default": None})
    newer["fields"].append({"name": "retries", "type": "long", "default": 0})
    value = encode({**EVENT, "contract_version": 2, "firmware": "1.2.3", "retries": 2}, 2, newer)
    classified = classify_records(_kafka_frame(spark, [value, GOOD]), {**load_schemas(), 2: newer})
    assert quarantine_rows(classified).count() == 0
    current, newer_row = sorted(_lake_rows(classified), key=lambda r: r["contract_version"])
    assert current["rescued_fields"] is None
    assert json.loads(newer_row["rescued_fields"]) == {"firmware": "1.2.3", "retries": 2}
    assert newer_row["contract_version"] == 2 and newer_row["power_kw"] == 50.0 and newer_row["wait_s"] == 12.5
    assert {k: v for k, v in newer_row.items() if k not in ("contract_version", "rescued_fields")} == \
        {k: v for k, v in current.items() if k not in ("contract_version", "rescued_fields")}
