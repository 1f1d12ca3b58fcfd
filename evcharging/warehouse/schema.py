"""ClickHouse DDL of the warehouse: one SQL dialect for chDB and a ClickHouse server.

Engines and sort keys follow the queries:

* facts are ``ReplacingMergeTree`` whose sort key is the row's identity (an event's key includes
  ``event_id``, a session's ``session_id``), so a re-load of the same lakeFS commit — or a
  duplicate event arriving in a later commit — collapses; reads use ``FINAL``. Sort keys start
  with ``station_id`` and time, the shape of the per-station time-series and utilisation queries.
  The event fact's skip indexes serve the load's own look-ups (``session_id``, ``load_commit``);
  each costs on every insert (a ``run_id`` index cost a quarter of the load), so there are no more.
* dimensions and marts are rebuilt whole into a shadow table and swapped in with
  ``EXCHANGE TABLES`` (atomic), so re-materializing them always leaves exactly one copy.
* ``load_log`` records each loaded lakeFS commit: the next load diffs from the last one.

The event columns come from the contract's ``FIELDS``, then ``rescued_fields`` (the JSON of keys the
contract did not know when the event was streamed); :func:`ensure_tables` also adds columns a
newer contract introduced (``ALTER … ADD COLUMN IF NOT EXISTS``) so an existing warehouse follows.
Such a column's default is its value among the rescued fields: the rows loaded before the contract
knew the field show what the producer sent (computed on read, then written by merges).
"""

from __future__ import annotations

from evcharging.contracts import FIELDS, KAFKA_COLUMNS, RESCUED_COLUMN, EventField

__all__ = ["TABLES", "ensure_tables", "event_column_types", "optional_fields", "qualified", "rescued_value", "sql_str"]

_LOW_CARDINALITY = {"event_type", "connector_type", "end_reason", "run_id", "vehicle_model_id"}
_NARROW_INTS = {"contract_version": "UInt16", "seq": "UInt32"}


def _clickhouse_type(f: EventField) -> str:
    if f.kind == "timestamp":
        base = "DateTime64(3, 'UTC')"
    elif f.kind == "int":
        base = _NARROW_INTS.get(f.name, "Int64")
    elif f.kind == "float":
        base = "Float64"
    else:
        base = "String"
    if f.nullable:
        base = f"Nullable({base})"
    if f.kind == "string" and f.name in _LOW_CARDINALITY:
        base = f"LowCardinality({base})"
    return base


def event_column_types() -> list[tuple[str, str]]:
    """(name, ClickHouse type) of ``fact_charging_events``, in order."""
    cols = [(f.name, _clickhouse_type(f)) for f in FIELDS]
    return cols + [(RESCUED_COLUMN, "Nullable(String)"), ("kafka_partition", "Int32"), ("kafka_offset", "Int64"),
                   ("load_commit", "String")]


def rescued_value(f: EventField) -> str:
    """SQL: field ``f`` as rescued under its name in ``rescued_fields`` (null when it is not there)."""
    return f"JSONExtract(ifNull(`{RESCUED_COLUMN}`, '{{}}'), '{f.name}', '{_clickhouse_type(f)}')"


def optional_fields() -> dict[str, EventField]:
    """The fields later contract versions added, by name: older events do not have them."""
    return {f.name: f for f in FIELDS if f.optional}


def _event_columns_ddl() -> list[tuple[str, str]]:
    """The fact's columns with their DDL: a field of a later contract version defaults to its rescued value."""
    optional = optional_fields()
    return [(n, f"{t} DEFAULT {rescued_value(optional[n])}" if n in optional else t) for n, t in event_column_types()]


assert set(KAFKA_COLUMNS) <= {n for n, _ in event_column_types()}


def _columns(cols: list[tuple[str, str]]) -> str:
    return ",\n    ".join(f"`{n}` {t}" for n, t in cols)


SESSION_COLUMN_TYPES = [
    ("session_id", "String"), ("run_id", "LowCardinality(String)"), ("station_id", "String"),
    ("charger_id", "String"), ("vehicle_id", "String"), ("vehicle_model_id", "LowCardinality(Nullable(String))"),
    ("connector_type", "LowCardinality(String)"), ("start_time", "DateTime64(3, 'UTC')"),
    ("end_time", "DateTime64(3, 'UTC')"), ("duration_s", "Float64"), ("energy_kwh", "Float64"),
    ("avg_power_kw", "Float64"), ("peak_power_kw", "Float64"), ("start_soc_pct", "Float64"),
    ("end_soc_pct", "Float64"), ("end_reason", "LowCardinality(Nullable(String))"), ("wait_s", "Float64"),
    ("queued_at", "DateTime64(3, 'UTC')"), ("event_count", "UInt32"), ("load_commit", "String"),
]  # fmt: skip

# One row per load: the commits it spans, what it loaded, and what the merge commits in between
# recorded (batches, Kafka records and their offset ranges as JSON, events, quarantined, dropped
# copies): reconciliation reads only these (see evcharging.warehouse.lineage).
LOAD_LOG_COLUMNS = [
    ("commit_id", "String"), ("previous_commit", "String"), ("files", "UInt32"), ("events_read", "UInt64"),
    ("events_loaded", "UInt64"), ("sessions_loaded", "UInt64"), ("loaded_at", "DateTime64(3, 'UTC')"),
    ("batches", "UInt32"), ("kafka_records", "UInt64"), ("kafka_ranges", "String"), ("lake_events", "UInt64"),
    ("quarantined", "UInt64"), ("dropped", "UInt64"),
    # The event times the load brought (null: no event): what later steps prune the facts by.
    ("first_event_time", "Nullable(DateTime64(3, 'UTC'))"), ("last_event_time", "Nullable(DateTime64(3, 'UTC'))"),
]  # fmt: skip

# The days a sessions pass wrote sessions for (start to end): the marts recompute only these.
SESSION_LOG_COLUMNS = [
    ("commit_id", "String"), ("sessions_loaded", "UInt64"), ("sessionized_at", "DateTime64(3, 'UTC')"),
    ("days", "Array(Date)"),
]  # fmt: skip

# The facts are sorted by station first, so a time range alone would read a granule of every
# station in the month: these per-granule min/max indexes let the steps that look at recent events
# (the sessions pass, a mart's days) skip everything older, however long the history.
_EVENT_TIME_INDEX = "INDEX idx_time event_time TYPE minmax GRANULARITY 1"
_START_TIME_INDEX = "INDEX idx_start start_time TYPE minmax GRANULARITY 1"
# A load's INSERT carries its commit as deduplication token: repeated after a crash (before load_log
# recorded it), it writes nothing, so the fact holds each event once even before merges.
_DEDUPLICATION_WINDOW = "non_replicated_deduplication_window = 1000"
# chDB merges only inside the process that holds it, for a step's second or two plus the wait on
# closing (``WarehouseResource.merge_wait_seconds``); a merge that outlasts it is cancelled and
# starts over in the next process, for ever. So on chDB the tables loads append to merge into parts
# of at most this size (~4 M events; a month partition of 250 M events is ~60 parts). A ClickHouse
# server merges in its own background and keeps its default (150 GB).
CHDB_MAX_MERGE_BYTES = 64 * 1024 * 1024
_CAPPED_MERGES = ("fact_charging_events", "session_events_open")

# name -> CREATE TABLE body after the name: "(columns) ENGINE … ORDER BY …"
TABLES: dict[str, str] = {
    "load_log": f"""(
    {_columns(LOAD_LOG_COLUMNS)}
) ENGINE = ReplacingMergeTree(loaded_at) ORDER BY commit_id""",
    # The loads whose sessions are summarised (a separate, later step: see load.sessionize_pending).
    "session_log": f"""(
    {_columns(SESSION_LOG_COLUMNS)}
) ENGINE = ReplacingMergeTree(sessionized_at) ORDER BY commit_id""",
    # The load in progress (one row, the newest wins): a load killed after its INSERT, before
    # load_log recorded it, is finished first by the next load, under the same deduplication token,
    # even when main moved on meanwhile (a load to the newer commit would insert its rows again).
    "load_started": """(
    commit_id String,
    previous_commit String,
    started_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(started_at) ORDER BY tuple()""",
    # Per load, per simulator run and event type: the events it inserted (reconciliation sums these
    # per run instead of counting the fact table).
    "load_counts": """(
    load_commit String,
    run_id LowCardinality(String),
    event_type LowCardinality(String),
    events UInt64,
    distinct_events UInt64,
    loaded_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(loaded_at) ORDER BY (run_id, event_type, load_commit)""",
    # Per sessions pass (its last load's commit) and simulator run: the sessions it wrote. A pass
    # repeated after a crash has the same key and collapses (unless new loads joined it meanwhile).
    "session_counts": """(
    pass_commit String,
    run_id LowCardinality(String),
    sessions UInt64,
    counted_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(counted_at) ORDER BY (run_id, pass_commit)""",
    # One row per reconciliation: the newest load it covered, the offsets published so far (joined
    # ranges), the runs found exact and the loads' open differences; the next one starts from here.
    "reconcile_log": """(
    reconciled_at DateTime64(3, 'UTC'),
    through DateTime64(3, 'UTC'),
    ranges String,
    exact_runs Array(String),
    load_differences String
) ENGINE = MergeTree ORDER BY reconciled_at""",
    # Per mart, the newest sessions pass (session_log.sessionized_at) whose days it has recomputed.
    "mart_log": """(
    mart String,
    through DateTime64(3, 'UTC'),
    refreshed_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(refreshed_at) ORDER BY mart""",
    "fact_charging_events": f"""(
    {_columns(_event_columns_ddl())},
    INDEX idx_session session_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_load load_commit TYPE set(16) GRANULARITY 4,
    {_EVENT_TIME_INDEX}
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (station_id, event_time, event_id)
SETTINGS {_DEDUPLICATION_WINDOW}""",
    # The events of sessions not summarised yet (a copy of each load's rows, sorted by session):
    # the sessions pass reads the sessions that ended from here, then deletes them, so it never
    # searches the event fact, whose size grows with history. It holds only open sessions' events.
    "session_events_open": f"""(
    {_columns(_event_columns_ddl())}
) ENGINE = MergeTree ORDER BY (session_id, event_id)
SETTINGS {_DEDUPLICATION_WINDOW}""",
    "fact_charging_sessions": f"""(
    {_columns(SESSION_COLUMN_TYPES)},
    INDEX idx_run run_id TYPE set(64) GRANULARITY 4,
    {_START_TIME_INDEX}
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(start_time)
ORDER BY (station_id, start_time, session_id)""",
    "dim_stations": """(
    station_id String,
    city LowCardinality(String),
    address String,
    operator LowCardinality(String),
    charger_type LowCardinality(String),
    capacity_kw Float64,
    power_kw Float64,
    cost_usd_per_kwh Float64,
    parking_spots UInt16,
    connector_types Array(LowCardinality(String)),
    latitude Float64,
    longitude Float64,
    opening_hours String,
    open_minute UInt16,
    close_minute UInt16,
    renewable_energy Bool,
    rating Float64,
    installation_year UInt16,
    retired Bool DEFAULT false
) ENGINE = ReplacingMergeTree ORDER BY station_id""",
    "dim_vehicles": """(
    vehicle_model_id String,
    name String,
    battery_kwh Float64,
    efficiency_wh_per_km Float64,
    dc_max_kw Nullable(Float64),
    ac_max_kw Float64,
    connector_types Array(LowCardinality(String)),
    price_eur Nullable(Float64),
    range_km Float64,
    top_speed_kmh Float64,
    acceleration_0_100_s Float64,
    retired Bool DEFAULT false
) ENGINE = ReplacingMergeTree ORDER BY vehicle_model_id""",
    "dim_time": """(
    hour DateTime('UTC'),
    date Date,
    year UInt16,
    month UInt8,
    day_of_month UInt8,
    day_of_week UInt8,
    hour_of_day UInt8,
    iso_week UInt8,
    is_weekend Bool
) ENGINE = ReplacingMergeTree ORDER BY hour""",
    "mart_station_hourly_utilisation": """(
    station_id String,
    hour DateTime('UTC'),
    city LowCardinality(String),
    charger_type LowCardinality(String),
    chargers UInt16,
    sessions UInt32,
    occupied_s Float64,
    utilisation Float64,
    energy_kwh Float64
) ENGINE = ReplacingMergeTree PARTITION BY toDate(hour) ORDER BY (station_id, hour)""",
    "mart_daily_energy_by_city_operator": """(
    date Date,
    city LowCardinality(String),
    operator LowCardinality(String),
    sessions UInt32,
    vehicles UInt32,
    energy_kwh Float64,
    revenue_usd Float64,
    avg_duration_min Float64,
    avg_wait_min Float64
) ENGINE = ReplacingMergeTree PARTITION BY date ORDER BY (date, city, operator)""",
    # Per day (of session start) and charger type: the states mart_charger_type_kpis is summed from,
    # so that a sessions pass recomputes only its days. p95 wait is a t-digest (exact quantiles would
    # keep every value); retired stations' time is kept apart, since the network in service changes.
    "mart_charger_type_daily": """(
    date Date,
    charger_type LowCardinality(String),
    sessions UInt64,
    energy_kwh Float64,
    sum_avg_power_kw Float64,
    peak_power_kw Float64,
    duration_s Float64,
    wait_s Float64,
    wait_p95 AggregateFunction(quantileTDigest(0.95), Float64),
    faults UInt64,
    occupied_s_in_service Float64
) ENGINE = ReplacingMergeTree PARTITION BY date ORDER BY (date, charger_type)""",
    "mart_charger_type_kpis": """(
    charger_type LowCardinality(String),
    stations UInt32,
    chargers UInt32,
    sessions UInt64,
    energy_kwh Float64,
    avg_energy_kwh Float64,
    avg_power_kw Float64,
    peak_power_kw Float64,
    avg_duration_min Float64,
    avg_wait_min Float64,
    p95_wait_min Float64,
    fault_rate Float64,
    utilisation Float64
) ENGINE = ReplacingMergeTree ORDER BY charger_type""",
}


def qualified(database: str, table: str) -> str:
    return f"`{database}`.`{table}`"


def sql_str(value: str) -> str:
    """``value`` as a ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ensure_tables(wh, database: str) -> None:
    """Create the database and every table if missing, and add columns a newer contract introduced."""
    wh.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    _relay_out(wh, database)
    for name, body in TABLES.items():
        wh.command(f"CREATE TABLE IF NOT EXISTS {qualified(database, name)} {body}")
    for name, columns in (("fact_charging_events", _event_columns_ddl()), ("session_events_open", _event_columns_ddl()),
                          ("load_log", LOAD_LOG_COLUMNS), ("session_log", SESSION_LOG_COLUMNS)):
        _add_missing_columns(wh, database, name, columns)
    _upgrade_facts(wh, database)


def _upgrade_facts(wh, database: str) -> None:
    """Give a fact created by an older version what the DDL now has: the deduplication window, and
    the time indexes (parts written from then on carry them; older parts are simply read, as before);
    on chDB, cap the size of a merge of the tables loads append to (``CHDB_MAX_MERGE_BYTES``).
    Each ALTER runs only when missing: ``ensure_tables`` runs in every load."""
    created = dict(wh.query_rows(f"SELECT name, create_table_query FROM system.tables WHERE database = '{database}' "
                                 "AND name IN ('fact_charging_events', 'fact_charging_sessions', 'session_events_open')"))
    events = qualified(database, "fact_charging_events")
    if "non_replicated_deduplication_window" not in created.get("fact_charging_events", _DEDUPLICATION_WINDOW):
        wh.command(f"ALTER TABLE {events} MODIFY SETTING {_DEDUPLICATION_WINDOW}")
    if wh.backend == "chdb":
        cap = f"max_bytes_to_merge_at_max_space_in_pool = {CHDB_MAX_MERGE_BYTES}"
        for name in _CAPPED_MERGES:
            if cap not in created.get(name, cap):
                wh.command(f"ALTER TABLE {qualified(database, name)} MODIFY SETTING {cap}")
    for name, index in (("fact_charging_events", _EVENT_TIME_INDEX), ("fact_charging_sessions", _START_TIME_INDEX)):
        if index.split()[1] not in created.get(name, index):
            wh.command(f"ALTER TABLE {qualified(database, name)} ADD {index}")


# Tables whose layout changed since they were first created here: (table, expected partition key).
# They hold nothing that cannot be recomputed, so an old layout is dropped and rebuilt.
_RELAID_OUT = {"mart_station_hourly_utilisation": "toDate(hour)", "mart_daily_energy_by_city_operator": "date"}


def _relay_out(wh, database: str) -> None:
    keys = dict(wh.query_rows(f"SELECT name, partition_key FROM system.tables WHERE database = '{database}'"))
    for name, key in _RELAID_OUT.items():
        if name in keys and keys[name] != key:
            wh.command(f"DROP TABLE {qualified(database, name)}")
            if "mart_log" in keys:  # its next refresh recomputes every day
                wh.command(f"ALTER TABLE {qualified(database, 'mart_log')} DELETE WHERE mart = '{name}' "
                           "SETTINGS mutations_sync = 1")


def _add_missing_columns(wh, database: str, name: str, columns: list[tuple[str, str]]) -> None:
    """Add the columns a newer version of the project introduced, each after its predecessor."""
    table = qualified(database, name)
    existing = {r[0] for r in wh.query_rows(
        f"SELECT name FROM system.columns WHERE database = '{database}' AND table = '{name}'")}
    previous = None
    for column, ch_type in columns:
        if column not in existing:
            after = f" AFTER `{previous}`" if previous else " FIRST"
            wh.command(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS `{column}` {ch_type}{after}")
        previous = column
