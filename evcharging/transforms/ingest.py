"""Kafka records → contract-checked events or quarantined records, in Spark SQL only.

Every check is a native Spark expression built from ``simulator.events.FIELDS`` (no Python UDF on
the hot path: a row-wise Python validator runs at ~70,000 events/s per core, Spark's JSON reader
several times faster). The reasons mirror ``simulator.events.validate``, so a record the
simulator would reject is quarantined here with the same words. Keys the contract does not know are
no reason: they are rescued into ``rescued_fields`` (JSON), as ``simulator.events.rescued_fields``.
Avro records (``simulator.avro``) share the topic: decoded in ``transforms.avro``, then checked by
the same rules, their writer's extra fields rescued the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache, reduce
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from evcharging.contracts import END_REASONS, EVENT_TYPES, FIELDS, RESCUED_COLUMN, lake_event_columns, spark_event_schema
from evcharging.transforms.avro import avro_columns, is_avro_record
from simulator.avro import load_schemas

TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
_NUMBER_KINDS = ("int", "float")
_TEXT_KINDS = ("string", "timestamp")

__all__ = ["classify_records", "lake_rows", "quarantine_rows", "valid_events"]


def _when(condition: Column, reason: Column | str) -> Column:
    return F.when(condition, reason if isinstance(reason, Column) else F.lit(reason))


def _field_reasons(raw: Column, keys: Column, event: Column) -> list[Column]:
    reasons = []
    for f in FIELDS:
        present = F.array_contains(keys, f.name)
        value = event[f.name]
        if not f.optional:  # a field of a later version is absent from an older producer's events
            reasons.append(_when(~present, f"missing field {f.name}"))
        if not f.nullable:
            # A JSON null, or a value of the wrong type that the parser had to drop. Each expression
            # below appears once, inside its branch: Spark evaluates a repeated subexpression eagerly
            # for every row, and a JSON-path look-up per field and row would cost more than the parse.
            dropped = F.get_json_object(raw, f"$.{f.name}").isNotNull()
            wrong = f"{f.name}: expected {f.kind}" if f.kind in _NUMBER_KINDS else f"{f.name} is null"
            reasons.append(_when(present & value.isNull(), F.when(dropped, wrong).otherwise(f"{f.name} is null")))
        if f.kind in _TEXT_KINDS:
            # Spark's JSON reader turns a number into a string silently; the contract does not.
            quoted = (F.instr(raw, f'"{f.name}":"') > 0) | raw.rlike(rf'"{f.name}"\s*:\s*"')
            reasons.append(_when(present & value.isNotNull() & ~quoted, f"{f.name}: expected {f.kind}"))
    return reasons


def _time_check(event: Column) -> tuple[Column, str]:
    """(broken?, reason) of event_time's format: a rule of its own, since the plain test of a JSON
    record has it in the reference shape already (one regular expression per record, not two)."""
    return ~event["event_time"].rlike(TIMESTAMP_PATTERN), "event_time: expected timestamp"


def _rule_checks(event: Column) -> list[tuple[Column, Column | str]]:
    """(broken?, reason) per rule of the contract beyond types and event_time's format."""
    known_types = F.array(*[F.lit(t) for t in EVENT_TYPES])
    known_reasons = F.array(*[F.lit(r) for r in END_REASONS])
    ended = event["event_type"] == "session_ended"
    checks = [
        # Newer versions are accepted: they only add optional fields, which are rescued until known.
        (event["contract_version"] < 1,
         F.concat(F.lit("contract_version "), event["contract_version"].cast("string"), F.lit(" is not a version (1 or later)"))),
        (~F.array_contains(known_types, event["event_type"]), F.concat(F.lit("unknown event_type "), event["event_type"])),
        (ended & (event["end_reason"].isNull() | ~F.array_contains(known_reasons, event["end_reason"])),
         "session_ended needs a known end_reason"),
        (~ended & event["end_reason"].isNotNull(), "end_reason is set on a non-final event"),
        (event["seq"] < 0, "seq is negative"),
        ((event["soc_pct"] < 0) | (event["soc_pct"] > 100), "soc_pct out of 0-100"),
    ]
    return checks + [(event[name] < 0, f"{name} is negative") for name in ("power_kw", "energy_kwh", "wait_s")]


def canonical_json_pattern() -> str:
    """A regular expression matched by the reference encoding of a valid event and by nothing with
    other keys: the contract's keys in contract order, text values quoted (without escapes), numbers
    bare, ``null`` only where the contract allows it, nothing after the object.

    It stands in for the key parse: a record it matches has no unknown and no missing key, so one
    JSON parse (``from_json``) decides it. Numbers are matched loosely on purpose: one the parser
    cannot read into its field shows as a null there, which the validity test rejects.
    """
    values = {"int": r"-?\d+", "float": r"-?\d[0-9.eE+-]*", "string": r'"[^"\\]*"',
              "timestamp": f'"{TIMESTAMP_PATTERN[1:-1]}"'}
    parts = [f'"{f.name}":' + (f"(?:null|{values[f.kind]})" if f.nullable else values[f.kind]) for f in FIELDS]
    return r"^\{" + ",".join(parts) + r"\}$"


def _plainly_valid(shape: Column, event: Column, rules: list[tuple[Column, Column | str]]) -> Column:
    """A cheap test passed by nearly every valid record and by no invalid one, with one parse.

    The record has the expected ``shape`` (JSON: the reference encoding's, see
    :func:`canonical_json_pattern`; Avro: a known schema, decoded to its last byte), every
    non-nullable value is there, and no rule is broken. Only the records it rejects pay for the key
    parse and the per-field diagnosis, which still finds the valid ones among them (say, JSON with
    spaces after the colons, an older producer's event, or a newer one's with fields to rescue).
    """
    conditions = [shape,
                  *[event[f.name].isNotNull() for f in FIELDS if not f.nullable],
                  *[~broken for broken, _ in rules]]
    return reduce(lambda a, b: a & b, conditions)


def _out_of_line(text: Column) -> Column:
    """``text``, evaluated by Spark's interpreter instead of inside the stage's generated code.

    ``reflect`` (here the identity ``String.valueOf``) is not code-generated, and neither are its
    arguments: the stage only calls it, for the rows that reach it. For the diagnosis (a few dozen
    checks, run only for the records the plain test rejects) that keeps the stage's method far
    below the JVM's 8,000-byte limit for JIT compilation; with the diagnosis inline it was ~53 KB and
    ran as interpreted bytecode for every record (classification at ~15 % of the parse's speed).
    A higher-order function would not do: Spark 4 generates code for lambdas too.
    """
    return F.reflect(F.lit("java.lang.String"), F.lit("valueOf"), text)


def _contract_keys() -> Column:
    return F.array(*[F.lit(f.name) for f in FIELDS])


def _rescued(raw: Column, plain: Column, unknown: Column) -> Column:
    """The unknown keys with their JSON values as one JSON object; null when there are none.

    A plainly valid record has none; only the others pay for the key difference, and only those with
    unknown keys for another parse (into variants, so a value keeps its JSON type: "1.2" stays a
    string, 1.2 a number).
    """
    entries = F.map_filter(F.from_json(raw, "map<string,variant>"), lambda k, _: ~F.array_contains(_contract_keys(), k))
    return F.when(plain, F.lit(None)).when(F.size(unknown) > 0, F.to_json(entries))


def classify_records(records: DataFrame, avro_schemas: Mapping[int, Mapping[str, Any]] | None = None) -> DataFrame:
    """Kafka rows (``value`` binary, ``partition``, ``offset``, …) → one row each with the parsed
    ``event`` struct, ``reason`` (every broken rule, ``; ``-separated; null = valid) and
    ``rescued_fields`` (the unknown keys as JSON, null when none).

    Each record is read by its first byte: the magic byte 0 is Avro in Confluent's wire format,
    decoded with the writer schema its id names (``avro_schemas``, default: the repository's,
    ``simulator.avro.load_schemas``); anything else is JSON. One JSON parse per record:
    ``from_json`` into the contract's struct; the keys are parsed only for the few records the plain
    test rejects (other formatting, an older or newer producer, a broken record).
    ``bench/bench_stream.py`` measures each way.

    The expressions are built once per set of schemas and reused by every batch: building them is
    ~6,500 calls from Python into the JVM, which took ~2 s per micro-batch on a 2-core machine
    (``bench_stream``'s batch profile, "lake rows written"), a fixed cost in every trigger.
    """
    schemas = load_schemas() if avro_schemas is None else avro_schemas
    stages, helpers = _classification(json.dumps({str(k): v for k, v in schemas.items()}, sort_keys=True), _jvm_id())
    for columns in stages:  # each stage reads columns the one before added
        records = records.withColumns(columns)
    return records.drop(*helpers)


def _jvm_id() -> int:
    """The JVM the cached expressions live in (a process has one; the key is a safeguard)."""
    from pyspark import SparkContext

    return id(SparkContext._gateway)


@lru_cache(maxsize=8)
def _classification(schemas_json: str, jvm: int) -> tuple[list[dict[str, Column]], list[str]]:
    """:func:`classify_records`'s expressions: the columns to add, stage by stage, and the helper
    columns to drop at the end. Pure expressions on the Kafka columns: any batch can take them."""
    schemas = {int(k): v for k, v in json.loads(schemas_json).items()}
    decoders, avro = avro_columns(schemas)
    value = F.col("value")
    is_avro = is_avro_record(value)
    raw = value.cast("string")
    # No corrupt-record column (it costs a third of the parse): broken JSON shows as null keys below,
    # and a value of the wrong type as a null field, which the checks report.
    event = F.when(is_avro, avro.event).otherwise(F.from_json(raw, spark_event_schema(), {"mode": "PERMISSIVE"}))
    raw_c, avro_c, event_c = F.col("_raw"), F.col("_avro"), F.col("event")
    rules = _rule_checks(event_c)
    time_broken, time_reason = _time_check(event_c)
    shape = F.when(avro_c, avro.complete & ~time_broken).otherwise(raw_c.rlike(canonical_json_pattern()))
    plain = F.coalesce(_plainly_valid(shape, event_c, rules), F.lit(False))
    # Null when the value is not a JSON object. json_object_keys (like from_json) reads the first
    # JSON value only and ignores what follows it, so the record must also end with that object.
    # Inside the branch: only the JSON records the plain test rejects are parsed a second time.
    keys = F.when(~F.col("_plain") & ~avro_c, F.when(F.rtrim(raw_c).endswith("}"), F.json_object_keys(raw_c)))
    plain_c, keys_c = F.col("_plain"), F.col("_keys")
    unknown = F.array_except(keys_c, _contract_keys())
    first_byte = F.ascii(raw_c)  # 0 for Avro; JSON opens with '{' or white space
    text = first_byte.isin(9, 10, 13) | first_byte.between(32, 126)
    bad_magic = ~avro_c & (F.octet_length(value) > 0) & ~text
    structural = [
        _when(raw_c.isNull(), "empty record"),
        _when(bad_magic, F.concat(F.lit("unknown magic byte 0x"), F.lower(F.hex(value.substr(1, 1))),
                                  F.lit(": neither Avro (0) nor JSON ('{')"))),
        _when(~avro_c & ~bad_magic & keys_c.isNull(), "not a JSON object"),
        *avro.reasons,
    ]
    # Field and rule checks only mean something for a JSON object or a decoded Avro record.
    # concat_ws skips the nulls (the checks that passed).
    is_object = keys_c.isNotNull()
    checked = is_object | avro.decoded
    detailed = [*[F.when(is_object, check) for check in _field_reasons(raw_c, keys_c, event_c)],
                *[F.when(checked, _when(broken, why)) for broken, why in [(time_broken, time_reason), *rules]]]
    diagnosis = F.concat_ws("; ", *structural, *detailed)
    reason = F.when(plain_c, F.lit(None)).otherwise(F.nullif(_out_of_line(diagnosis), F.lit("")))
    rescued = F.when(avro_c, avro.rescued).otherwise(_rescued(raw_c, plain_c, unknown))
    stages = [decoders, {"_raw": raw, "_avro": is_avro, "event": event}, {"_plain": plain}, {"_keys": keys},
              {"reason": reason.cast("string"), RESCUED_COLUMN: rescued}]
    return [stage for stage in stages if stage], ["_keys", "_plain", "_avro", *decoders]


def valid_events(classified: DataFrame) -> DataFrame:
    """The valid rows as lake rows: contract columns, Kafka coordinates, typed time, event date."""
    valid, _, _ = _lake_rows(_jvm_id())
    return lake_rows(classified.where(valid))


def lake_rows(events: DataFrame) -> DataFrame:
    """Rows with an ``event`` struct, ``rescued_fields`` and the Kafka ``partition`` and ``offset`` →
    the lake's columns in the lake's order, event_time typed, and the ``event_date`` partition."""
    _, columns, event_date = _lake_rows(_jvm_id())
    return events.select(*columns).select(*lake_event_columns()).withColumn("event_date", event_date)


@lru_cache(maxsize=2)
def _lake_rows(jvm: int) -> tuple[Column, list[Column], Column]:
    """:func:`valid_events`' expressions, built once (as the classification's)."""
    # A cast, not to_timestamp with a pattern: Spark's own ISO-8601 parser is several times faster
    # than a formatter, and the rules already hold event_time to one exact shape.
    event_time = F.col("event.event_time").try_cast("timestamp")
    columns = [F.col(f"event.{f.name}").alias(f.name) for f in FIELDS if f.kind != "timestamp"]
    return F.col("reason").isNull(), [*columns, event_time.alias("event_time"), F.col(RESCUED_COLUMN),
                                      F.col("partition").alias("kafka_partition"),
                                      F.col("offset").alias("kafka_offset")], F.to_date("event_time")


def quarantine_rows(classified: DataFrame) -> DataFrame:
    """The invalid rows as they came (raw bytes), with Kafka coordinates and every reason."""
    return (classified.where(F.col("reason").isNotNull())
            .select(F.col("key"), F.col("value"), F.col("topic").alias("kafka_topic"),
                    F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
                    F.col("timestamp").alias("kafka_timestamp"),
                    F.col("reason")))
