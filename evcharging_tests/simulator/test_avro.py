"""The Avro contract: its schema files are generated from ``FIELDS``, records carry Confluent's wire
header, the simulator's hot-path encoder writes exactly what fastavro writes for the same events,
and a newer writer's record is read by name (its new field kept, as in Avro's resolution)."""

from __future__ import annotations

import json
import struct

import pytest

from evcharging_tests.simulator.conftest import run_world
from simulator import avro
from simulator.avro import AvroSessionEventEncoder, avro_schema, decode, encode, load_schemas
from simulator.cli import main
from simulator.events import FIELDS, RunManifest, decode as decode_json
from simulator.world import World, WorldConfig


def test_the_schema_files_are_those_generated_from_fields():
    assert avro.main([]) == 0
    schema = load_schemas()[1]
    assert [f["name"] for f in schema["fields"]] == [f.name for f in FIELDS]
    assert {f["name"]: f["type"] for f in schema["fields"]}["end_reason"] == ["null", "string"]


def test_a_simulated_run_in_avro_is_the_json_run_encoded_by_fastavro():
    config = dict(seed=3, vehicles=60, duration_h=None, sessions=40)
    _, as_json = run_world(WorldConfig(**config))
    _, as_avro = run_world(WorldConfig(**config, encoding="avro"))
    assert len(as_avro) == len(as_json) > 100
    for (key_j, value_j), (key_a, value_a) in zip(as_json, as_avro, strict=True):
        event = decode_json(value_j)
        assert key_a == key_j
        assert value_a == encode(event), event
        assert decode(value_a) == event
    assert value_a[:5] == b"\x00\x00\x00\x00\x01"  # magic byte 0, schema id 1 (big-endian)
    assert sum(len(v) for _, v in as_avro) < 0.5 * sum(len(v) for _, v in as_json)


@pytest.mark.parametrize("seq", [0, 4095, 4096, 10**6])
def test_hot_path_encoder_matches_fastavro_for_large_seq_and_end_reasons(seq):
    enc = AvroSessionEventEncoder("r", "s", "EVS1", "EVS1-1", "V1", "m", "CCS", 0.125)
    value = enc.encode("session_ended", seq, 1767600000123, "7.4", 3.25, 99.5, "departure")
    event = decode(value)
    assert event["seq"] == seq and event["power_kw"] == 7.4 and event["end_reason"] == "departure"
    assert value == encode(event)


def test_hot_path_encoder_keeps_percent_signs_and_non_ascii_text_as_they_are():
    """The encoder formats each event with a bytes %-template: a '%' in an id must stay literal."""
    enc = AvroSessionEventEncoder("r%d", "s%s-1", "Zürich 100%", "Zürich 100%-2", "V%b", "m%%", "Typ 2", 3.5)
    for event_type, reason in (("charging_progress", None), ("session_ended", "fault")):
        value = enc.encode(event_type, 7, 1767600000123, 11.0, 1.5, 55.0, reason)
        event = decode(value)
        assert (event["station_id"], event["vehicle_id"], event["session_id"]) == ("Zürich 100%", "V%b", "s%s-1")
        assert value == encode(event)


def test_decode_rejects_a_bad_header_and_an_unknown_schema_id():
    good = AvroSessionEventEncoder("r", "s", "E", "E-1", "V", "m", "CCS", 0.0).encode("session_started", 0, 0, 1.0, 0.0, 5.0)
    with pytest.raises(ValueError, match="wire format"):
        decode(b"\x01" + good[1:])
    with pytest.raises(ValueError, match="unknown Avro schema id 7"):
        decode(struct.pack(">bI", 0, 7) + good[5:])


def test_a_newer_writer_is_read_by_field_name_and_keeps_its_new_field():
    v2 = avro_schema(1)
    v2["fields"].insert(3, {"name": "firmware", "type": ["null", "string"], "default": None})  # anywhere: by name
    event = {**decode(AvroSessionEventEncoder("r", "s", "E", "E-1", "V", "m", "CCS", 0.0)
                      .encode("session_started", 0, 0, 1.0, 0.0, 5.0)), "firmware": "1.2"}
    value = encode(event, schema_id=2, schema=v2)
    assert decode(value, {**load_schemas(), 2: v2}) == event


def test_unknown_encodings_are_refused():
    reference = ([], [])
    with pytest.raises(ValueError, match="encoding must be one of"):
        World(*reference, WorldConfig(encoding="protobuf"))
    with pytest.raises(SystemExit):
        main(["--sink", "file", "--out", "x.jsonl", "--encoding", "avro"])


def test_kafka_and_null_sinks_default_to_avro_a_file_to_json_lines(tmp_path):
    run = ["--source", "synthetic", "--vehicles", "100", "--duration", "2", "--start", "2026-01-05T08:00:00+00:00", "--quiet"]
    assert main([*run, "--sink", "null", "--manifest", str(tmp_path / "null.json")]) == 0
    assert main([*run, "--sink", "file", "--out", str(tmp_path / "events.jsonl")]) == 0
    null, file = (RunManifest.from_json((tmp_path / name).read_text()) for name in ("null.json", "events.jsonl.manifest.json"))
    assert (null.parameters["encoding"], file.parameters["encoding"]) == ("avro", "json")
    assert (tmp_path / "events.jsonl").read_bytes().startswith(b"{")


def test_a_record_of_either_encoding_is_read_by_its_first_byte():
    event = decode(AvroSessionEventEncoder("r", "s", "E", "E-1", "V", "m", "CCS", 0.0)
                   .encode("session_started", 0, 0, 1.0, 0.0, 5.0))
    assert avro.decode_record(encode(event)) == avro.decode_record(json.dumps(event).encode()) == event
