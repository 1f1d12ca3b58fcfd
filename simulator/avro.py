"""The event contract in Avro, beside JSON: one schema per contract version, Confluent's wire format.

A record is the magic byte 0, the writer schema's id as 4 bytes big-endian, then the Avro binary
body of the event (Confluent's wire format, so a schema registry can take over the ids later).
Until one does, the ids come from the schemas in this repository: ``schemas/charging_event-v<N>.avsc``
has id N, the contract version it describes. Each file is generated from ``FIELDS``
(:func:`avro_schema`) and a test holds the files to the generator, so JSON and Avro cannot drift.

The stream dispatches on a record's first byte (``{`` JSON, 0 Avro), so both encodings can share
the topic during a migration, and reads an Avro body with the schema its id names (the writer's),
then resolves it to the contract it knows the way Avro's reader/writer resolution does: fields by
name, a field the writer lacks is null (every field added after version 1 is nullable), and a field
only the writer has is *rescued* into ``rescued_fields`` like an unknown JSON key.

Adding a version: the steps in ``simulator.events`` (bump ``CONTRACT_VERSION``, append the fields
with ``since=``), then ``python -m simulator.avro --write`` to add ``charging_event-v<N>.avsc``.
Never edit a schema file that was released: producers of that version still write with it.

``encode``/``decode`` are the reference codec (fastavro); ``AvroSessionEventEncoder`` is the
simulator's hot path and must produce the very same bytes (a test holds it to that).
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from simulator.events import CONTRACT_VERSION, EVENT_TYPES, FIELDS, SessionEventEncoder, _DAYS, _clock, session_digest
from simulator.events import decode as decode_json

MAGIC_BYTE = 0
HEADER_BYTES = 5  # magic byte + schema id
SCHEMA_DIR = Path(__file__).parent / "schemas"
SCHEMA_NAME = "evcharging.events.ChargingEvent"
_AVRO_TYPES = {"string": "string", "int": "long", "float": "double", "timestamp": "string"}


def avro_schema(version: int = CONTRACT_VERSION) -> dict[str, Any]:
    """The Avro schema of contract ``version``: the fields of that version, in contract order.

    Timestamps stay the contract's ISO-8601 text, so one set of checks serves both encodings.
    """
    fields = []
    for f in FIELDS:
        if f.since > version:
            continue
        kind = _AVRO_TYPES[f.kind]
        field: dict[str, Any] = {"name": f.name, "type": ["null", kind] if f.nullable else kind, "doc": f.doc}
        if f.nullable:
            field["default"] = None
        fields.append(field)
    namespace, name = SCHEMA_NAME.rsplit(".", 1)
    return {"type": "record", "name": name, "namespace": namespace,
            "doc": f"A charging event, contract version {version} (simulator/events.py).", "fields": fields}


def schema_file(version: int, directory: Path = SCHEMA_DIR) -> Path:
    return directory / f"charging_event-v{version}.avsc"


def schema_text(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def load_schemas(*directories: Path) -> dict[int, dict[str, Any]]:
    """Schema id → writer schema: this repository's, then those of ``directories`` (writers newer
    than this code, until a registry serves them). The id is the N of ``charging_event-v<N>.avsc``."""
    schemas: dict[int, dict[str, Any]] = {}
    for directory in (SCHEMA_DIR, *directories):
        for path in sorted(Path(directory).glob("charging_event-v*.avsc")):
            schemas[int(path.stem.rsplit("-v", 1)[1])] = json.loads(path.read_text())
    return schemas


def wire_header(schema_id: int) -> bytes:
    return struct.pack(">bI", MAGIC_BYTE, schema_id)


@cache
def _parsed(schema_json: str):
    from fastavro import parse_schema

    return parse_schema(json.loads(schema_json))


def encode(event: Mapping[str, Any], schema_id: int = CONTRACT_VERSION, schema: Mapping[str, Any] | None = None) -> bytes:
    """The reference encoder: header, then the body fastavro writes with ``schema`` (default: the
    repository's schema of ``schema_id``)."""
    from fastavro import schemaless_writer

    schema = schema or load_schemas()[schema_id]
    body = io.BytesIO()
    schemaless_writer(body, _parsed(json.dumps(schema, sort_keys=True)), dict(event))
    return wire_header(schema_id) + body.getvalue()


def decode(data: bytes, schemas: Mapping[int, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """One record → the event as its writer wrote it; ValueError for a bad header or unknown id."""
    from fastavro import schemaless_reader

    if len(data) < HEADER_BYTES or data[0] != MAGIC_BYTE:
        raise ValueError("not an Avro record in Confluent's wire format (magic byte 0, 4-byte schema id)")
    schema_id = struct.unpack(">I", data[1:HEADER_BYTES])[0]
    schemas = schemas if schemas is not None else load_schemas()
    if schema_id not in schemas:
        raise ValueError(f"unknown Avro schema id {schema_id}")
    return schemaless_reader(io.BytesIO(data[HEADER_BYTES:]), _parsed(json.dumps(schemas[schema_id], sort_keys=True)))


def decode_record(data: bytes, schemas: Mapping[int, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """One Kafka record in either encoding, read by its first byte as the stream reads it: the magic
    byte 0 is Avro (:func:`decode`), anything else JSON (``simulator.events.decode``)."""
    return decode(data, schemas) if data[:1] == bytes([MAGIC_BYTE]) else decode_json(data)


def _long(n: int) -> bytes:
    """Avro's long: zig-zag, then a little-endian base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return _long(len(data)) + data


_SMALL_LONGS = [_long(n) for n in range(4096)]  # seq numbers: a list look-up instead of a varint loop
_TYPES = {t: _string(t) for t in EVENT_TYPES}
_TIME_PREFIX = _long(len("2026-01-05T08:00:00.000Z"))
_NO_REASON = b"\x00"  # union branch 0: null
_PACK3 = struct.Struct("<ddd").pack


class _ByteDays(dict):
    """Epoch day -> b'YYYY-MM-DDT' (the JSON encoder's day cache, as bytes)."""

    def __missing__(self, day: int) -> bytes:
        value = self[day] = _DAYS[day].encode()
        return value


_BYTE_DAYS = _ByteDays()
_BYTE_CLOCK: list[bytes] = []  # second of the day -> b'HH:MM:SS', built on first use


def _byte_clock() -> list[bytes]:
    if not _BYTE_CLOCK:
        _BYTE_CLOCK.extend(t.encode() for t in _clock())
    return _BYTE_CLOCK


def _literal(data: bytes) -> bytes:
    """``data`` as a literal part of a bytes %-format."""
    return data.replace(b"%", b"%%")


class AvroSessionEventEncoder:
    """Encodes the events of one session in the wire format of schema ``CONTRACT_VERSION``,
    byte-identical to :func:`encode`; the same calls as ``SessionEventEncoder``.

    What never changes within a session is encoded once, into one bytes %-format per event type
    whose holes are the event id's seq, the seq, the timestamp's three parts and the measurements:
    an event costs one format, a varint look-up and one ``struct.pack``.
    """

    __slots__ = ("_formats", "_days", "_clock")

    def __init__(self, run_id: str, session_id: str, station_id: str, charger_id: str,
                 vehicle_id: str, vehicle_model_id: str, connector_type: str, wait_s: float) -> None:
        digest = session_digest(run_id, session_id)
        head = _literal(wire_header(CONTRACT_VERSION) + _long(CONTRACT_VERSION) + _long(32) + digest.encode())
        run_session = _string(run_id) + _string(session_id)
        where = b"".join(_string(s) for s in (station_id, charger_id, vehicle_id, vehicle_model_id, connector_type))
        tail = _literal(where) + b"%b" + _literal(struct.pack("<d", float(wait_s))) + b"%b"
        # head, event id's seq (hex), type, run and session, seq, event time, where, measurements,
        # wait, end reason
        self._formats = {t: head + b"%08x" + _literal(_TYPES[t] + run_session) + b"%b" + _literal(_TIME_PREFIX)
                         + b"%b%b.%03dZ" + tail for t in EVENT_TYPES}
        self._days, self._clock = _BYTE_DAYS, _byte_clock()

    def encode(self, event_type: str, seq: int, epoch_ms: int, power_kw: float | str, energy_kwh: float,
               soc_pct: float, end_reason: str | None = None) -> bytes:
        day, ms = divmod(epoch_ms, 86_400_000)
        s, ms = divmod(ms, 1000)
        return self._formats[event_type] % (
            seq, _SMALL_LONGS[seq] if seq < 4096 else _long(seq), self._days[day], self._clock[s], ms,
            _PACK3(float(power_kw), energy_kwh, soc_pct),
            _NO_REASON if end_reason is None else b"\x02" + _string(end_reason))


ENCODERS = {"json": SessionEventEncoder, "avro": AvroSessionEventEncoder}
# What the simulator writes to Kafka unless told otherwise: Avro, because it measured faster at
# every stage (simulator, stream, freshness; README "Encodings"). A file of events stays JSON lines.
DEFAULT_KAFKA_ENCODING = "avro"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check (default) or write simulator/schemas/*.avsc from FIELDS.")
    parser.add_argument("--write", action="store_true", help="write the current version's schema file")
    args = parser.parse_args(argv)
    path, text = schema_file(CONTRACT_VERSION), schema_text(avro_schema(CONTRACT_VERSION))
    if args.write:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
        return 0
    stale = [v for v in range(1, CONTRACT_VERSION + 1)
             if not schema_file(v).exists() or schema_file(v).read_text() != schema_text(avro_schema(v))]
    print(f"out of date with FIELDS: {stale}" if stale else "every schema file matches FIELDS")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
