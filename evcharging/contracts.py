"""Schemas derived from the simulator's event contract (``simulator.events.FIELDS``): one source.

The Spark stream parses with :func:`spark_event_schema`; the lake stores the columns of
:func:`lake_event_columns`; the audit checks and the warehouse DDL build theirs from ``FIELDS`` too.
"""

from __future__ import annotations

from simulator.events import CONTRACT_VERSION, END_REASONS, EVENT_TYPES, FIELDS, EventField

__all__ = [
    "CONTRACT_VERSION", "END_REASONS", "EVENT_TYPES", "FIELDS", "KAFKA_COLUMNS", "LAKE_EVENTS_PATH",
    "QUARANTINE_PATH", "RESCUED_COLUMN", "lake_event_columns", "spark_event_schema",
]

# Where the stream writes on each ingest branch (and, once merged, on main).
LAKE_EVENTS_PATH = "events"  # Parquet, partitioned by event_date
QUARANTINE_PATH = "quarantine/events"  # raw bytes + Kafka coordinates + reason

# Kafka coordinates kept beside every valid event: they prove exactly-once and allow replays.
KAFKA_COLUMNS = ("kafka_partition", "kafka_offset")
# The keys of an event this contract does not know, as one JSON object (null when there are none):
# a newer producer's fields are kept, not rejected (see simulator.events on contract versions).
RESCUED_COLUMN = "rescued_fields"


def _spark_type(f: EventField):
    from pyspark.sql import types as T

    # Timestamps arrive as ISO strings; the stream checks their format and converts them itself.
    return {"string": T.StringType(), "int": T.LongType(), "float": T.DoubleType(),
            "timestamp": T.StringType()}[f.kind]


def spark_event_schema(corrupt_column: str | None = None):
    """The contract as a Spark StructType (optionally with a corrupt-record column for from_json)."""
    from pyspark.sql import types as T

    fields = [T.StructField(f.name, _spark_type(f), True) for f in FIELDS]
    if corrupt_column:
        fields.append(T.StructField(corrupt_column, T.StringType(), True))
    return T.StructType(fields)


def lake_event_columns() -> list[str]:
    """Columns of a valid event on the lake, in order (``event_date`` is the Parquet partition)."""
    return [f.name for f in FIELDS] + [RESCUED_COLUMN, *KAFKA_COLUMNS]
