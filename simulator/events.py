"""The event contract of the charging simulator, version 1.

The producer owns this module: the Spark stream, the pandera checks and the ClickHouse DDL import
`FIELDS` from here instead of restating the schema, so a change to an event is made once.

An event is one JSON object per Kafka record (key = session_id), with the keys of `FIELDS` in that
order and numbers as JSON numbers. `encode` is the reference encoder; `SessionEventEncoder` is the
hot-path encoder the simulator uses and must produce the very same bytes (a test holds it to that).
The same contract in Avro, one schema file per version generated from `FIELDS`, is `simulator.avro`.

Versions are additive, so that producers and the stream can be upgraded in any order:

* A consumer accepts events of every version from 1 on, newer ones included. A key it does not
  know is not an error: it is kept with the event as a *rescued* field (the lake's and the
  warehouse's ``rescued_fields`` JSON column), like Databricks Auto Loader's rescued-data column.
* Adding a version: bump ``CONTRACT_VERSION`` and append the new fields to ``FIELDS`` with
  ``since=<the new version>`` and ``nullable=True`` (events of older producers do not have them).
  Never remove, rename or retype a field: that is a new topic, not a new version. The stream then
  parses the field into its own lake column, and the warehouse adds the column on its next load,
  filled for rows loaded before from what was rescued under the same name. Then write the version's
  Avro schema: ``python -m simulator.avro --write``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from hashlib import blake2b
from typing import Any

CONTRACT_VERSION = 1
EVENT_TYPES = ("session_started", "charging_progress", "session_ended")
END_REASONS = ("target_soc", "departure", "fault", "station_closing")
FIELD_KINDS = ("string", "int", "float", "timestamp")


@dataclass(frozen=True, slots=True)
class EventField:
    """One field of the event: its JSON name, kind, whether it may be null, its meaning, and the
    contract version that added it (a field added after version 1 may be absent: older producers)."""

    name: str
    kind: str
    nullable: bool
    doc: str
    since: int = 1

    @property
    def optional(self) -> bool:
        return self.since > 1


FIELDS: tuple[EventField, ...] = (
    EventField("contract_version", "int", False, "Version of this contract (CONTRACT_VERSION)."),
    EventField("event_id", "string", False,
               "Stable id, 32 hex digits: blake2b-96 of run_id/session_id, then seq as 8 hex digits."),
    EventField("event_type", "string", False, "One of EVENT_TYPES."),
    EventField("run_id", "string", False, "The simulator run that emitted the event."),
    EventField("session_id", "string", False, "Charging session, unique across runs; the Kafka key."),
    EventField("seq", "int", False, "0-based position of the event in its session, consecutive."),
    EventField("event_time", "timestamp", False,
               "Simulated time, ISO-8601 UTC with milliseconds, e.g. 2026-01-05T08:00:00.000Z."),
    EventField("station_id", "string", False, "Charging station (reference data _id)."),
    EventField("charger_id", "string", False, "station_id + '-' + 1-based charger (parking spot) index."),
    EventField("vehicle_id", "string", False, "Fleet vehicle, e.g. V000042."),
    EventField("vehicle_model_id", "string", False, "The vehicle's model: its _id in the vehicles collection."),
    EventField("connector_type", "string", False, "Connector used, shared by station and vehicle."),
    EventField("power_kw", "float", False,
               "Instantaneous charging power at event_time (on session_ended: when charging stopped)."),
    EventField("energy_kwh", "float", False, "Energy delivered in this session so far (integral of power)."),
    EventField("soc_pct", "float", False, "Battery state of charge, 0-100."),
    EventField("wait_s", "float", False, "Seconds queued before plug-in; the same in every event of a session."),
    EventField("end_reason", "string", True, "One of END_REASONS on session_ended, null otherwise."),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)

# Decimals kept per float field: enough for kWh-level accounting, short enough to keep records small.
POWER_DECIMALS, ENERGY_DECIMALS, SOC_DECIMALS, WAIT_DECIMALS = 3, 4, 3, 3

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_EPOCH = date(1970, 1, 1)


def session_digest(run_id: str, session_id: str) -> str:
    """The first 24 hex digits of every event id of a session."""
    return blake2b(f"{run_id}/{session_id}".encode(), digest_size=12).hexdigest()


def event_id(run_id: str, session_id: str, seq: int) -> str:
    """The deterministic id of an event: blake2b of run and session, then the sequence number in
    hex. A replayed run repeats it; hashing once per session instead of per event keeps it cheap."""
    return f"{session_digest(run_id, session_id)}{seq:08x}"


class _DayCache(dict):
    """Epoch day -> 'YYYY-MM-DDT'; formatting the date part once per simulated day is what makes
    timestamps cheap on the hot path."""

    def __missing__(self, day: int) -> str:
        value = (_EPOCH + timedelta(days=day)).isoformat() + "T"
        self[day] = value
        return value


_DAYS = _DayCache()
_CLOCK: list[str] = []  # second of the day -> 'HH:MM:SS', built on first use


def _clock() -> list[str]:
    if not _CLOCK:
        _CLOCK.extend(f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60))
    return _CLOCK


def format_event_time(epoch_ms: int) -> str:
    """Epoch milliseconds -> '2026-01-05T08:00:00.000Z'."""
    day, ms = divmod(epoch_ms, 86_400_000)
    s, ms = divmod(ms, 1000)
    return f"{_DAYS[day]}{_clock()[s]}.{ms:03d}Z"


def parse_event_time(text: str) -> datetime:
    """Parse an event_time back to an aware UTC datetime."""
    if not _TIMESTAMP.match(text):
        raise ValueError(f"not an ISO-8601 UTC timestamp with milliseconds: {text!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def encode(event: Mapping[str, Any]) -> bytes:
    """Compact JSON with the keys in contract order, so the same event is always the same bytes."""
    return json.dumps({name: event[name] for name in FIELD_NAMES}, separators=(",", ":")).encode()


def decode(data: bytes | str) -> dict[str, Any]:
    """Parse one encoded event; raises ValueError when it is not a JSON object (see validate)."""
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError(f"an event is a JSON object, got {type(value).__name__}")
    return value


def _kind_error(kind: str, value: Any) -> str | None:
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    elif kind == "string":
        ok = isinstance(value, str)
    else:
        if not isinstance(value, str):
            ok = False
        else:
            try:
                parse_event_time(value)
                ok = True
            except ValueError:
                ok = False
    return None if ok else f"expected {kind}, got {value!r}"


def rescued_fields(event: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``event`` this contract does not know (a newer producer's), with their values."""
    return {name: value for name, value in event.items() if name not in FIELD_NAMES}


def validate(event: Any) -> list[str]:
    """Every reason the event breaks the contract; an empty list means it is valid. Unknown keys
    are no reason (see :func:`rescued_fields`), and neither is a newer contract_version."""
    if not isinstance(event, Mapping):
        return [f"event is not an object: {type(event).__name__}"]
    reasons: list[str] = []
    for f in FIELDS:
        if f.name not in event:
            if not f.optional:
                reasons.append(f"missing field {f.name}")
            continue
        value = event[f.name]
        if value is None:
            if not f.nullable:
                reasons.append(f"{f.name} is null")
            continue
        error = _kind_error(f.kind, value)
        if error:
            reasons.append(f"{f.name}: {error}")
    if reasons:
        return reasons
    if event["contract_version"] < 1:
        reasons.append(f"contract_version {event['contract_version']} is not a version (1 or later)")
    if event["event_type"] not in EVENT_TYPES:
        reasons.append(f"unknown event_type {event['event_type']!r}")
    if event["event_type"] == "session_ended":
        if event["end_reason"] not in END_REASONS:
            reasons.append(f"session_ended needs an end_reason in {END_REASONS}, got {event['end_reason']!r}")
    elif event["end_reason"] is not None:
        reasons.append(f"end_reason is set on a {event['event_type']} event")
    if event["seq"] < 0:
        reasons.append(f"seq is negative: {event['seq']}")
    if not 0 <= event["soc_pct"] <= 100:
        reasons.append(f"soc_pct out of 0-100: {event['soc_pct']}")
    for name in ("power_kw", "energy_kwh", "wait_s"):
        if event[name] < 0:
            reasons.append(f"{name} is negative: {event[name]}")
    return reasons


def _json_string(text: str) -> str:
    """json.dumps for a str, skipping the encoder for the plain ASCII ids that are the rule."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


class SessionEventEncoder:
    """Encodes the events of one session, byte-identical to `encode`.

    The strings that never change within a session are JSON-escaped once, and the id is hashed
    once, so an event costs a table lookup for its timestamp and one f-string.
    """

    __slots__ = ("_digest", "_run_session", "_where", "_tail", "_days", "_clock")

    def __init__(self, run_id: str, session_id: str, station_id: str, charger_id: str,
                 vehicle_id: str, vehicle_model_id: str, connector_type: str, wait_s: float) -> None:
        dumps = _json_string
        self._digest = session_digest(run_id, session_id)
        self._run_session = f',"run_id":{dumps(run_id)},"session_id":{dumps(session_id)},"seq":'
        self._where = (f',"station_id":{dumps(station_id)},"charger_id":{dumps(charger_id)}'
                       f',"vehicle_id":{dumps(vehicle_id)},"vehicle_model_id":{dumps(vehicle_model_id)}'
                       f',"connector_type":{dumps(connector_type)}'
                       ',"power_kw":')
        self._tail = f',"wait_s":{float(wait_s)!r},"end_reason":'
        self._days, self._clock = _DAYS, _clock()

    def encode(self, event_type: str, seq: int, epoch_ms: int, power_kw: float | str, energy_kwh: float,
               soc_pct: float, end_reason: str | None = None) -> bytes:
        """One event; the floats must already be rounded (see the *_DECIMALS constants). A number
        may also come as its str(), which for a float is its JSON text."""
        day, ms = divmod(epoch_ms, 86_400_000)
        s, ms = divmod(ms, 1000)
        reason = "null" if end_reason is None else f'"{end_reason}"'
        return (f'{{"contract_version":{CONTRACT_VERSION},"event_id":"{self._digest}{seq:08x}"'
                f',"event_type":"{event_type}"{self._run_session}{seq}'
                f',"event_time":"{self._days[day]}{self._clock[s]}.{ms:03d}Z"'
                f'{self._where}{power_kw},"energy_kwh":{energy_kwh},"soc_pct":{soc_pct}'
                f'{self._tail}{reason}}}').encode()


@dataclass
class RunManifest:
    """What one run emitted, published at its end (or on interruption, after flushing) so later
    stages can reconcile their counts against the producer's."""

    run_id: str
    seed: int
    contract_version: int = CONTRACT_VERSION
    sim_started: str | None = None
    sim_finished: str | None = None
    wall_started: str | None = None
    wall_finished: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENT_TYPES, 0))
    events_total: int = 0
    sessions_started: int = 0
    sessions_completed: int = 0
    sessions_abandoned: int = 0
    arrivals_unserved: int = 0
    energy_kwh: float = 0.0
    interrupted: bool = False
    sink: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    # Per partition of the events topic, the offset of the run's last event as the broker acknowledged
    # it (Kafka sink only): reconciliation tells "still on its way" from "lost" with it, without
    # reading the topic again (whose early segments retention may have deleted).
    kafka_last_offsets: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: bytes | str) -> RunManifest:
        return cls(**json.loads(data))
