"""Avro records in Confluent's wire format → the contract's event struct, in Spark SQL only.

A record is the magic byte 0, a 4-byte schema id, then the Avro body (``simulator.avro``). Each
known id's body is decoded once with its writer schema (``from_avro``, PERMISSIVE: an undecodable
body gives a row of nulls instead of failing the query), then resolved to the contract by field
name as Avro's reader/writer resolution does: a contract field the writer lacks is null, a writer
field the contract lacks is rescued (JSON, as an unknown JSON key is), a number widens (int → long,
float → double). What resolution cannot do is a reason, named per record.

``from_avro`` reads a body from its start and does not look at what is left after the last field.
So the stream appends a mark of 8 bytes to each body and reads it as one more field: a body that
ends where its schema's last field ends reads the mark back; one with bytes left over reads those
instead (or fails), and a truncated one fails. One comparison, where counting the bytes each value
took would cost a branch per field and record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from evcharging.contracts import FIELDS
from simulator.avro import HEADER_BYTES, wire_header

# Writer types the reader's kind resolves (Avro's promotions included).
_RESOLVES = {"int": ("int", "long"), "float": ("int", "long", "float", "double"), "string": ("string",),
             "timestamp": ("string",)}
_SPARK_TYPES = {"int": "bigint", "float": "double", "string": "string", "timestamp": "string"}
# Appended to every body and read as one more field: where the writer's last field ends, this must be.
_END_MARK = b"\xfe\xedEVend\x00"
_END_FIELD = {"name": "__evcharging_end_mark", "type": {"type": "fixed", "name": "EvchargingEndMark", "size": len(_END_MARK)}}


@dataclass(frozen=True)
class AvroColumns:
    """Per record (each null or false for a JSON record): what the stream needs of an Avro one."""

    event: Column  # the contract's struct, resolved from the writer's record
    complete: Column  # a known id, decoded to the body's last byte, resolvable: the plain test's share
    decoded: Column  # a known id whose body decoded (its values mean something: the rules apply)
    rescued: Column  # the writer's fields the contract lacks, as one JSON object
    reasons: list[Column]  # why it cannot be read (each null when that one does not apply)


def _primitive(avro_type: Any) -> tuple[str | None, bool]:
    """(the primitive type, whether null is allowed) of a field's type; None for anything else."""
    if isinstance(avro_type, list):
        others = [t for t in avro_type if t != "null"]
        if len(others) == 1 and len(avro_type) == 2 and isinstance(others[0], str):
            return others[0], True
        return None, "null" in avro_type
    return (avro_type, False) if isinstance(avro_type, str) else (None, False)


def schema_problems(schema: Mapping[str, Any]) -> dict[str, str]:
    """Field → what keeps the contract from reading it in records of this writer schema (empty: none)."""
    writer = {f["name"]: f["type"] for f in schema.get("fields", [])}
    problems = {}
    for f in FIELDS:
        if f.name not in writer:
            if not f.optional:
                problems[f.name] = f"missing field {f.name}"
        elif _primitive(writer[f.name])[0] not in _RESOLVES[f.kind]:
            problems[f.name] = f"{f.name}: expected {f.kind}, the writer has {json.dumps(writer[f.name])}"
    return problems


def _resolved(decoded: Column, schema: Mapping[str, Any], problems: Mapping[str, str]) -> tuple[Column, Column]:
    """(the contract's struct, the rescued JSON) of a decoded record."""
    writer = {f["name"] for f in schema["fields"]}
    event = F.struct(*[
        (decoded[f.name] if f.name in writer and f.name not in problems else F.lit(None))
        .cast(_SPARK_TYPES[f.kind]).alias(f.name) for f in FIELDS])
    extra = [f["name"] for f in schema["fields"] if f["name"] not in {f.name for f in FIELDS}]
    rescued = (F.to_json(F.struct(*[decoded[name].alias(name) for name in extra]), {"ignoreNullFields": "false"})
               if extra else F.lit(None).cast("string"))
    return event, rescued


def _chain(cases: list[tuple[Column, Column]], otherwise: Column) -> Column:
    if not cases:
        return otherwise
    chained = F.when(*cases[0])
    for condition, value in cases[1:]:
        chained = chained.when(condition, value)
    return chained.otherwise(otherwise)


def decode_avro(records: DataFrame, schemas: Mapping[int, Mapping[str, Any]]) -> tuple[DataFrame, AvroColumns]:
    """``records`` with one decoded column per known schema id (decoded only for its records), and
    the columns that read them."""
    decoders, columns = avro_columns(schemas)
    return (records.withColumns(decoders) if decoders else records), columns


def avro_columns(schemas: Mapping[int, Mapping[str, Any]]) -> tuple[dict[str, Column], AvroColumns]:
    """The expressions of :func:`decode_avro`, for any records with a ``value`` column: the decoded
    column to add per known schema id (named ``_avro_<id>``), and the columns that read them."""
    from pyspark.sql.avro.functions import from_avro

    value = F.col("value")
    is_avro = is_avro_record(value)
    body = F.concat(F.expr(f"substr(value, {HEADER_BYTES + 1})"), F.lit(bytearray(_END_MARK)))
    header = value.substr(1, HEADER_BYTES)
    decoders: dict[str, Column] = {}
    events, completes, decodeds, rescueds, reasons = [], [], [], [], []
    for schema_id, schema in sorted(schemas.items()):
        known = header == F.lit(bytearray(wire_header(schema_id)))
        column = f"_avro_{schema_id}"
        marked = {**schema, "fields": [*schema["fields"], _END_FIELD]}
        decoders[column] = F.when(known, from_avro(body, json.dumps(marked), {"mode": "PERMISSIVE"}))
        decoded = F.col(column)
        problems = schema_problems(schema)
        required = next((f["name"] for f in schema["fields"] if not _primitive(f["type"])[1]), None)
        ok = decoded[required].isNotNull() if required else F.lit(True)  # a failed decode is all nulls
        whole = decoded[_END_FIELD["name"]] == F.lit(bytearray(_END_MARK))
        event, rescued = _resolved(decoded, schema, problems)
        events.append((known, event))
        rescueds.append((known, rescued))
        decodeds.append((known, ok))
        completes.append((known, ok & whole & F.lit(not problems)))
        where = f"Avro schema id {schema_id}"
        reasons += [_when(known & ~ok, f"Avro body of {where} is truncated or not of that schema"),
                    _when(known & ok & ~whole, f"Avro body does not match {where}: bytes are left after its last field")]
        reasons += [_when(known, f"{problem} ({where})") for problem in problems.values()]
        # A writer may allow null where the contract does not (a union): that is a null field.
        reasons += [_when(known & ok & decoded[f.name].isNull(), f"{f.name} is null") for f in FIELDS
                    if not f.nullable and f.name not in problems and _primitive(_writer_type(schema, f.name))[1]]
    any_known = reduce(lambda a, b: a | b, [known for known, _ in events], F.lit(False))
    reasons = [
        _when(is_avro & (F.octet_length(value) < HEADER_BYTES),
              F.concat(F.lit("truncated Avro record: "), F.octet_length(value).cast("string"),
                       F.lit(f" bytes, its header alone is {HEADER_BYTES}"))),
        _when(is_avro & (F.octet_length(value) >= HEADER_BYTES) & ~any_known,
              F.concat(F.lit("unknown Avro schema id "), F.conv(F.hex(value.substr(2, 4)), 16, 10))),
        *reasons]
    empty_struct = F.lit(None).cast(", ".join(f"{f.name}: {_SPARK_TYPES[f.kind]}" for f in FIELDS).join(("struct<", ">")))
    return decoders, AvroColumns(
        event=_chain(events, empty_struct), complete=_chain(completes, F.lit(False)),
        decoded=_chain(decodeds, F.lit(False)), rescued=_chain(rescueds, F.lit(None).cast("string")), reasons=reasons)


def _writer_type(schema: Mapping[str, Any], name: str) -> Any:
    return next((f["type"] for f in schema["fields"] if f["name"] == name), None)


def _when(condition: Column, reason: Column | str) -> Column:
    return F.when(condition, reason if isinstance(reason, Column) else F.lit(reason))


def is_avro_record(value: Column) -> Column:
    """The stream's dispatch: an Avro record starts with the magic byte 0 (JSON with ``{``)."""
    return F.coalesce(value.substr(1, 1) == F.lit(bytearray(1)), F.lit(False))
