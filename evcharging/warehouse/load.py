"""Load what a lakeFS commit of ``main`` added into the warehouse facts, keyed by that commit.

One load, in two separately timed phases:

1. ``load_log`` names the last commit loaded; the lakeFS diff from it to the new commit lists the
   event files the new commit added (the lake is append-only: a removed or changed file means
   ``main``'s history was rewritten, and the load stops rather than guess). The first load lists
   every event file of the commit.
2. **Events — ClickHouse loads them itself** (:func:`load_event_files`): ``INSERT INTO
   fact_charging_events … SELECT … FROM s3(<file>) UNION ALL s3(<file>) …`` reads those Parquet
   files over lakeFS's S3 gateway *at the commit id* (an immutable ref), one ``s3()`` per exact file
   key — a glob would make ClickHouse LIST the whole prefix, which grows with the lake. No event
   row passes through Python or Spark. The same SQL runs on chDB and on a ClickHouse server, which
   must reach the lakeFS endpoint itself (in docker compose both use ``http://lakefs:8000``).
3. **Sessions — Spark summarises them** (:func:`sessionize`, with
   :func:`evcharging.transforms.sessions.charging_sessions`) over ALL their events, not just the new
   ones: every load also appends its events to ``session_events_open`` (sorted by session), from
   which the events of each session the loads touched that has ended are read, as Arrow, and then
   deleted. That table holds only sessions still open, so the read costs what the ended sessions
   hold, never a search of the event fact (which grows with history) or of the lake.
4. ``load_log`` records the commit last, so a crash before it simply repeats the load, whose INSERT
   carries the load as deduplication token: the repeat writes nothing (and both facts are
   ``ReplacingMergeTree`` keyed by the row's identity, so any copy would collapse under ``FINAL``).
   If main moved on before the repeat, the next load finishes the interrupted one first
   (``load_started`` names it), under its own token, then loads the rest.

Every figure a load reports comes from the rows it adds, never from the whole table: the files are
first read into a staging table of their own (``fact_charging_events__load_<id>``, Memory), which
gives the load's counts per simulator run (``load_counts``, what reconciliation sums), its event
time span (``load_log``: what ``dim_time`` extends to and the lag is read from) and a preview, and
is then appended to the fact in one INSERT. A load that finds main's head older than what it
loaded already (another run got there first) has nothing to do.

Duplicates: the audit lets each ``event_id`` reach ``main`` once, so the events are inserted as they
are, with no dedupe pass inside a load (and ``events_loaded`` counts rows inserted). Should a copy of
an event reach the warehouse again (a repeated load, a replay), it has the same sort key (station,
time, event id) and ``FINAL`` (and, in time, merges) keeps one row: the one inserted last (for two
copies inside one INSERT, ClickHouse's choice — they are identical if the audit held). A copy that
differs in station or time would not collapse; the reconciliation check counts it. The lakeFS credentials are part of the ``s3()`` SQL: that SQL
is never logged, and errors raised from it have the credentials masked.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

from evcharging.contracts import lake_event_columns
from evcharging.crashpoints import crashpoint
from evcharging.lake.ingest import is_ancestor
from evcharging.lake.main import LakeHistoryError, added_event_files
from evcharging.warehouse.lineage import merged_batches, union_ranges
from evcharging.warehouse.schema import (
    ensure_tables, event_column_types, optional_fields, qualified, rescued_value, sql_str,
)

__all__ = [
    "EVENT_FILES_PER_INSERT", "EventLoadError", "LakeHistoryError", "LoadReport", "event_insert_sql",
    "SessionsReport", "last_loaded_commit", "last_sessionized_commit", "load_event_files", "load_lake_commit",
    "close_sessions", "interrupted_load", "load_log", "loaded", "loaded_totals", "record_load", "session_days", "session_events", "sessionize",
    "sessionize_pending", "stage_and_append", "unsessionized_commits",
]  # fmt: skip

# Files per INSERT: bounds the SQL (about 0.8 kB a file; ClickHouse parses at most max_query_size,
# 256 KiB by default) and the number of sources one query opens at once.
EVENT_FILES_PER_INSERT = 200
_MAX_SQL_CHARS = 200_000


@dataclass(frozen=True)
class LoadReport:
    """One load. ``events_read``: rows the INSERTs read from the added files; ``events_loaded``: rows
    they wrote to ``fact_charging_events`` — the same number, as nothing is filtered or deduplicated
    on the way (duplicates collapse in the table, see the module docstring). ``sessions_loaded``:
    completed-session rows written (a session touched twice is written twice and collapses).
    The ``*_seconds`` are wall-clock times of the two phases (0 for a report read from ``load_log``).
    ``batches`` … ``dropped``: the ingest batches merged into main between the two commits, as their
    merge commits recorded them (Kafka records and offset ranges, events, quarantined, dropped copies)."""

    commit: str
    previous_commit: str | None
    files: int
    events_read: int
    events_loaded: int
    sessions_loaded: int
    already_loaded: bool = False
    events_seconds: float = 0.0
    sessions_seconds: float = 0.0
    # What the merge commits between the two commits recorded (evcharging.warehouse.lineage).
    batches: int = 0
    kafka_records: int = 0
    kafka_ranges: str = "{}"
    lake_events: int = 0
    quarantined: int = 0
    dropped: int = 0
    # The earliest arrival (event time less queueing) and the last event time the load brought, in
    # ms since the epoch (None: no event, or a load recorded before these were).
    first_event_ms: int | None = None
    last_event_ms: int | None = None
    preview: str = field(default="", repr=False, compare=False)  # the newest rows loaded (Markdown), not recorded

    def metadata(self) -> dict:
        return {k: ("" if v is None else v) for k, v in asdict(self).items() if k != "preview"}


class EventLoadError(RuntimeError):
    """ClickHouse could not load the event files (the message never holds the lakeFS credentials)."""


def last_loaded_commit(wh, database: str) -> str | None:
    rows = wh.query_rows(f"SELECT commit_id FROM {qualified(database, 'load_log')} FINAL "
                         "ORDER BY loaded_at DESC, commit_id LIMIT 1")
    return rows[0][0] if rows else None


def loaded_totals(wh, database: str) -> tuple[int, int | None]:
    """(events loaded by every load, the newest event time loaded in µs or None), from ``load_log``
    alone: the fact's own count and max would read the whole table."""
    rows = wh.query_rows(f"SELECT sum(events_loaded), toUnixTimestamp64Micro(max(last_event_time)) "
                         f"FROM {qualified(database, 'load_log')} FINAL")
    total, newest = rows[0] if rows else (0, None)
    return int(as_int(total) or 0), as_int(newest)


_COUNTS = ("files", "events_read", "events_loaded", "sessions_loaded", "batches", "kafka_records", "lake_events",
           "quarantined", "dropped")


def loaded(wh, database: str, commit: str) -> LoadReport | None:
    """The record of an earlier load of ``commit``, or None."""
    rows = load_log(wh, database, f"commit_id = {sql_str(commit)}")
    return rows[0] if rows else None


def as_int(value) -> int | None:
    """An integer read through pandas, None for a null (None, NaN or pandas.NA)."""
    import pandas as pd

    return None if value is None or pd.isna(value) else int(value)


def load_log(wh, database: str, where: str = "1") -> list[LoadReport]:
    """The loads recorded in ``load_log`` (``where``: an SQL condition), oldest first."""
    rows = wh.query_df(
        f"SELECT commit_id, previous_commit, kafka_ranges, {', '.join(_COUNTS)}, "
        "toUnixTimestamp64Milli(first_event_time) AS first_ms, toUnixTimestamp64Milli(last_event_time) AS last_ms "
        f"FROM {qualified(database, 'load_log')} FINAL WHERE {where} ORDER BY loaded_at, commit_id")
    return [LoadReport(commit=r.commit_id, previous_commit=r.previous_commit or None, kafka_ranges=r.kafka_ranges or "{}",
                       already_loaded=True, first_event_ms=as_int(r.first_ms), last_event_ms=as_int(r.last_ms),
                       **{k: int(getattr(r, k)) for k in _COUNTS})
            for r in rows.itertuples(index=False)]


def _time_sql(ms: int | None) -> str:
    return "NULL" if ms is None else f"fromUnixTimestamp64Milli({int(ms)}, 'UTC')"


def record_load(wh, database: str, report: LoadReport) -> None:
    counts = ", ".join(str(getattr(report, k)) for k in _COUNTS)
    wh.command(
        f"INSERT INTO {qualified(database, 'load_log')} "
        f"(commit_id, previous_commit, kafka_ranges, {', '.join(_COUNTS)}, first_event_time, last_event_time, "
        f"loaded_at) VALUES "
        f"({sql_str(report.commit)}, {sql_str(report.previous_commit or '')}, {sql_str(report.kafka_ranges)}, "
        f"{counts}, {_time_sql(report.first_event_ms)}, {_time_sql(report.last_event_ms)}, now64(3, 'UTC'))")


# --- phase 1: events, ClickHouse reading the lake files -------------------------------------------

def _file_structure() -> str:
    """The ``s3()`` structure of a lake event file: each column with the type it has in the fact.

    ClickHouse converts while it decodes the Parquet — Spark writes ``event_time`` as INT96 (ns,
    UTC), read as DateTime64(3, 'UTC') exact to the ms; Int64 → UInt16/UInt32; strings →
    LowCardinality — so the SELECT needs no casts, and no file is opened a second time to infer its
    schema. ``event_date`` (the hive partition directory, not a column of the file) is not read. A
    null in a non-Nullable column — which the audit rules out — would become the type's default.
    """
    fact = dict(event_column_types())
    return ", ".join(f"`{c}` {fact[c]}" for c in lake_event_columns())


def _file_url(lakefs, commit: str, path: str, endpoint: str | None) -> str:
    if any(ch in path for ch in "*?{}"):  # ClickHouse would expand them as a glob (and LIST)
        raise ValueError(f"event file path has glob characters, refusing to load it: {path!r}")
    return f"{(endpoint or lakefs.endpoint).rstrip('/')}/{lakefs.repository}/{commit}/{path}"


def event_insert_sql(database: str, lakefs, commit: str, paths: list[str], endpoint: str | None = None,
                     table: str = "fact_charging_events") -> str:
    """One ``INSERT … SELECT`` of the given event files of ``commit`` into ``table`` (the fact or a
    load's staging table; holds the lakeFS credentials); ``endpoint``: lakeFS's S3 gateway as
    ClickHouse reaches it, when not at ``lakefs.endpoint``."""
    columns = ", ".join(f"`{c}`" for c in lake_event_columns())
    # A file written before the contract knew a field has it only among the rescued fields.
    optional = optional_fields()
    values = ", ".join(f"ifNull(`{c}`, {rescued_value(optional[c])}) AS `{c}`" if c in optional else f"`{c}`"
                       for c in lake_event_columns())
    credentials = f"{sql_str(lakefs.access_key_id)}, {sql_str(lakefs.secret_access_key)}"
    structure = sql_str(_file_structure())
    files = "\nUNION ALL ".join(
        f"SELECT * FROM s3({sql_str(_file_url(lakefs, commit, p, endpoint))}, {credentials}, 'Parquet', {structure})"
        for p in paths)
    # optimize_on_insert = 0: collapsing duplicates within each inserted block halves the insert's
    # speed and guarantees nothing (FINAL and merges collapse across blocks and parts anyway).
    # use_hive_partitioning = 0: the file's columns only, whatever its directory is called.
    return (f"INSERT INTO {qualified(database, table)} ({columns}, `load_commit`)\n"
            f"SELECT {values}, {sql_str(commit)} AS `load_commit` FROM (\n{files})\n"
            "SETTINGS optimize_on_insert = 0, use_hive_partitioning = 0")


def _chunks(database: str, lakefs, commit: str, paths: list[str], files_per_insert: int,
            endpoint: str | None) -> Iterator[list[str]]:
    """The paths in groups of at most ``files_per_insert`` files and about _MAX_SQL_CHARS of SQL."""
    if not paths:
        return
    longest = max(paths, key=len)
    one, two = (len(event_insert_sql(database, lakefs, commit, [longest] * n, endpoint)) for n in (1, 2))
    per_file, rest = two - one, 2 * one - two
    size = max(1, min(files_per_insert, (_MAX_SQL_CHARS - rest) // per_file))
    for i in range(0, len(paths), size):
        yield paths[i:i + size]


def _masked(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[HIDDEN]")
    return text


def run_masking_secrets(run: Callable[[str], object], sql: str, secrets: list[str]) -> object:
    """``run(sql)``; on failure an :class:`EventLoadError` whose message has ``secrets`` masked.

    The new error is raised outside the ``except`` block, so it carries no ``__context__`` that
    would show the original message (ClickHouse quotes the SQL in syntax errors)."""
    try:
        return run(sql)
    except Exception as exc:  # any backend's error, re-raised masked below
        failure = f"{type(exc).__name__}: {_masked(str(exc), secrets)}"
    raise EventLoadError(f"warehouse: loading event files from lakeFS failed: {failure[:4000]}")


def load_event_files(wh, database: str, lakefs, commit: str, paths: list[str],
                     files_per_insert: int = EVENT_FILES_PER_INSERT, table: str = "fact_charging_events") -> None:
    """Insert the rows of the given event files of ``commit`` into ``table`` (the fact, or a load's
    staging table, which the caller counts), tagged with ``load_commit = commit``.

    ClickHouse (chDB or the server behind ``wh``) reads the files over lakeFS's S3 gateway itself (at
    ``wh.lakefs_endpoint`` when the server reaches lakeFS elsewhere), in INSERTs of at most
    ``files_per_insert`` files each."""
    secrets = [lakefs.secret_access_key, lakefs.access_key_id]
    endpoint = wh.lakefs_endpoint
    for chunk in _chunks(database, lakefs, commit, paths, files_per_insert, endpoint):
        run_masking_secrets(wh.command, event_insert_sql(database, lakefs, commit, chunk, endpoint, table), secrets)


STAGING_PREFIX = "fact_charging_events__load_"


@dataclass(frozen=True)
class StagedLoad:
    """What a load's staging table held: its events, time span and newest rows."""

    events: int
    first_event_ms: int | None
    last_event_ms: int | None
    preview: str


def _drop_stale_staging(wh, database: str) -> None:
    """Staging tables of loads that were killed: a fact has one writer at a time, so none is in use."""
    for (name,) in wh.query_rows(f"SELECT name FROM system.tables WHERE database = '{database}' "
                                 f"AND startsWith(name, '{STAGING_PREFIX}')"):
        wh.command(f"DROP TABLE IF EXISTS {qualified(database, name)}")


def stage_and_append(wh, database: str, lakefs, commit: str, paths: list[str], token: str) -> StagedLoad:
    """Read the files into a staging table, record the load's counts per run in ``load_counts``,
    append the rows to ``fact_charging_events`` and to ``session_events_open`` (deduplicated by
    ``token``: the same load repeated writes nothing) and drop the staging table."""
    from evcharging.warehouse.tables import markdown_table

    name = f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    staging = qualified(database, name)
    wh.command(f"CREATE TABLE {staging} AS {qualified(database, 'fact_charging_events')} ENGINE = Memory")
    try:
        load_event_files(wh, database, lakefs, commit, paths, table=name)
        [(events, first, last)] = wh.query_rows(
            f"SELECT count(), toUnixTimestamp64Milli(min(addMilliseconds(event_time, -toInt64(wait_s * 1000)))), "
            f"toUnixTimestamp64Milli(max(event_time)) FROM {staging}")
        newest = wh.query_df(f"SELECT * FROM {staging} ORDER BY event_time DESC, event_id LIMIT 10")
        wh.command(f"INSERT INTO {qualified(database, 'load_counts')} SELECT load_commit, run_id, event_type, "
                   f"count(), uniqExact(event_id), now64(3, 'UTC') FROM {staging} GROUP BY load_commit, run_id, event_type")
        # The token makes a repeat of this load (after a crash before load_log recorded it) write nothing.
        columns = ", ".join(f"`{c}`" for c, _ in event_column_types())
        for table in ("fact_charging_events", "session_events_open"):
            wh.command(f"INSERT INTO {qualified(database, table)} ({columns}) SELECT {columns} FROM {staging} "
                       f"SETTINGS optimize_on_insert = 0, insert_deduplicate = 1, "
                       f"insert_deduplication_token = {sql_str(token)}")
    finally:
        wh.command(f"DROP TABLE IF EXISTS {staging}")
    events = int(events)
    return StagedLoad(events, as_int(first) if events else None, as_int(last) if events else None,
                      markdown_table(list(newest.columns), list(newest.itertuples(index=False, name=None))))


# --- phase 2: sessions, Spark summarising the warehouse's events ------------------------------------

def _session_columns() -> str:
    casts = {"contract_version": "toInt64(contract_version)", "seq": "toInt64(seq)",
             "kafka_partition": "toInt32(kafka_partition)", "vehicle_model_id": "nullIf(vehicle_model_id, '')"}
    return ", ".join(f"{casts.get(n, f'`{n}`')} AS `{n}`" for n, _ in event_column_types() if n != "load_commit")


def _ended_sessions_sql(database: str, commits: list[str]) -> str:
    """The sessions the loads ``commits`` touched that have ended (in one of them or an earlier one),
    from ``session_events_open`` (only sessions not summarised yet are there)."""
    table = qualified(database, "session_events_open")
    loads = ", ".join(sql_str(c) for c in commits)
    return (f"SELECT session_id FROM {table} "
            f"WHERE session_id IN (SELECT session_id FROM {table} WHERE load_commit IN ({loads})) "
            "GROUP BY session_id HAVING countIf(event_type = 'session_ended') > 0")


def _ended_open_events(database: str, commits: list[str]) -> str:
    """``FROM … WHERE …`` of the open-session events of the sessions the loads ``commits`` touched
    that have ended: what a pass reads (:func:`_session_events_sql`) and counts
    (:func:`session_event_count`)."""
    table = qualified(database, "session_events_open")
    return f"FROM {table} WHERE session_id IN ({_ended_sessions_sql(database, commits)})"


def _chunk_sql(chunk: tuple[int, int] | None) -> str:
    """The condition that keeps chunk ``(i, of)`` of the sessions (by a hash of the session id, so a
    session is always whole in one chunk); empty for all of them."""
    return "" if chunk is None or chunk[1] == 1 else f" AND cityHash64(session_id) % {chunk[1]} = {chunk[0]}"


def _session_events_sql(database: str, commits: str | list[str], indexed: bool = True,
                        chunk: tuple[int, int] | None = None) -> str:
    """Every event of the sessions the loads ``commits`` touched that have ended, one row per event:
    from ``session_events_open``, sorted by session (``indexed``), else from the event fact
    (the loads recorded before that table existed: a search of the whole fact, once). ``chunk``:
    only chunk ``(i, of)`` of those sessions (see :func:`_chunk_sql`)."""
    commits = [commits] if isinstance(commits, str) else commits
    if indexed:
        return (f"SELECT {_session_columns()} {_ended_open_events(database, commits)}{_chunk_sql(chunk)} "
                "LIMIT 1 BY event_id")
    events = qualified(database, "fact_charging_events")
    loads = ", ".join(sql_str(c) for c in commits)
    return f"""
SELECT {_session_columns()} FROM {events} FINAL
WHERE session_id IN (
    SELECT session_id FROM {events}
    WHERE session_id IN (SELECT session_id FROM {events} WHERE load_commit IN ({loads}))
    GROUP BY session_id HAVING countIf(event_type = 'session_ended') > 0){_chunk_sql(chunk)}"""


def session_events(wh, database: str, commits: str | list[str], indexed: bool = True,
                   chunk: tuple[int, int] | None = None):
    """The events of :func:`_session_events_sql` as Arrow."""
    return wh.query_arrow(_session_events_sql(database, commits, indexed, chunk))


def session_event_count(wh, database: str, commits: list[str]) -> int:
    """How many rows :func:`session_events` (indexed) holds for ``commits``, copies included: a count
    in ClickHouse, no row leaves it."""
    return int(wh.query_rows(f"SELECT count() {_ended_open_events(database, commits)}")[0][0])


def close_sessions(wh, database: str, session_ids) -> tuple[int, int] | None:
    """Delete from ``session_events_open`` the sessions a pass summarised (``session_ids``: exactly
    those it read, as Arrow; a session that ended in a load landing meanwhile stays for the next
    pass), and any event older than SESSION_MAX_HOURS before the newest (a late copy of a session
    summarised already: it would never end again); then :func:`compact_open_sessions` (its result
    is returned)."""
    import pyarrow as pa

    from evcharging.warehouse.marts import SESSION_MAX_HOURS

    table = qualified(database, "session_events_open")
    if len(session_ids):
        ids = qualified(database, f"session_events_closing_{uuid.uuid4().hex[:12]}")
        wh.command(f"CREATE TABLE {ids} (session_id String) ENGINE = Memory")
        try:
            wh.insert_arrow(ids, pa.table({"session_id": pa.array(session_ids).unique()}))
            wh.command(f"DELETE FROM {table} WHERE session_id IN (SELECT session_id FROM {ids})")
        finally:
            wh.command(f"DROP TABLE IF EXISTS {ids}")
    stale = f"event_time < (SELECT max(event_time) FROM {table}) - INTERVAL {SESSION_MAX_HOURS} HOUR"
    if wh.query_rows(f"SELECT count() FROM {table} WHERE {stale}")[0][0]:  # a DELETE is a mutation: only when due
        wh.command(f"DELETE FROM {table} WHERE {stale}")
    return compact_open_sessions(wh, database)


# A DELETE only masks rows (a lightweight delete); they leave the disk when a merge rewrites their
# part. On chDB merges stop at CHDB_MAX_MERGE_BYTES, so parts at that size would keep every masked
# row for good and session_events_open would grow with history (the 60-min soak: 24.1 M rows on disk
# for 7.3 M open). Once masked rows outnumber the live ones, the pass rewrites the table with only
# the live rows (OPTIMIZE … FINAL, which no merge cap limits): about one rewrite per row inserted.
COMPACT_OPEN_SESSIONS_MIN_ROWS = 1_000_000


def _open_rows(wh, database: str) -> int:
    """Rows in ``session_events_open``'s active parts, deleted ones included (from system.parts: no scan)."""
    [(rows,)] = wh.query_rows(f"SELECT sum(rows) FROM system.parts WHERE database = {sql_str(database)} "
                              "AND table = 'session_events_open' AND active")
    return as_int(rows) or 0


def compact_open_sessions(wh, database: str) -> tuple[int, int] | None:
    """Rewrite ``session_events_open`` without its deleted rows when they outnumber the live ones
    (and the table is bigger than ``COMPACT_OPEN_SESSIONS_MIN_ROWS``); return (rows on disk before,
    live rows) when it did, else None."""
    table = qualified(database, "session_events_open")
    on_disk = _open_rows(wh, database)
    if on_disk < COMPACT_OPEN_SESSIONS_MIN_ROWS:
        return None
    live = int(wh.query_rows(f"SELECT count() FROM {table}")[0][0])
    if on_disk <= 2 * live:
        return None
    wh.command(f"OPTIMIZE TABLE {table} FINAL")
    return on_disk, live


def sessionize(wh, database: str, spark, commits: str | list[str]) -> int:
    """(Re)write ``fact_charging_sessions`` for the sessions the events of ``commits`` (the loads'
    commits) touched that have ended; return the number of session rows written."""
    return _sessionize(wh, database, spark, [commits] if isinstance(commits, str) else commits).num_rows


def _sessionize(wh, database: str, spark, commits: list[str]):
    """The session rows written (Arrow; empty when no session ended), and the sessions closed.

    Their events come from the warehouse as Arrow (timestamps stay ms-exact, UInt columns are cast to
    the signed types the transform expects, LowCardinality arrives as plain strings), Spark
    summarises them, and the rows go back as Arrow."""
    import pyarrow as pa

    events = session_events(wh, database, commits)
    if not events.num_rows:
        return pa.table({"start_time": pa.array([], pa.timestamp("ms", "UTC")),
                         "end_time": pa.array([], pa.timestamp("ms", "UTC"))})
    sessions = summarise_sessions(spark, events, commits[-1])
    if sessions.num_rows:
        wh.insert_arrow(qualified(database, "fact_charging_sessions"), sessions)
    close_sessions(wh, database, events["session_id"])
    return sessions


def summarise_sessions(spark, events, commit: str):
    """Spark's session rows (Arrow) for the events (Arrow) of ended sessions, marked with ``commit``."""
    from pyspark.sql import functions as F

    from evcharging.transforms.sessions import charging_sessions

    frame = spark.createDataFrame(events)
    return charging_sessions(frame, deduplicated=True).withColumn("load_commit", F.lit(commit)).toArrow()


# --- one load ---------------------------------------------------------------------------------------

def load_lake_commit(wh, database: str, spark, lakefs, commit: str, full_reload: bool = False,
                     log=None) -> LoadReport:
    """Bring the warehouse facts up to lakeFS commit ``commit`` (see the module docstring).

    ``spark`` is a SparkSession or a callable returning one: it is called only if the commit added
    event files, so an already-loaded commit or an empty diff starts no JVM. With ``spark=None``
    only the events are loaded; :func:`sessionize_pending` summarises their sessions later. A
    ``commit`` that an earlier load already went past is nothing to do: the report is then that
    newer load's (``already_loaded``), the commit the warehouse holds."""
    ensure_tables(wh, database)
    done = loaded(wh, database, commit)
    if done and not full_reload:
        return done
    previous = None if full_reload else last_loaded_commit(wh, database)
    if previous and is_ancestor(lakefs, commit, previous):  # a target that another load passed
        if log:
            log(f"commit {commit[:12]} is older than the last one loaded ({previous[:12]}): nothing to load")
        return loaded(wh, database, previous)
    interrupted = None if full_reload else interrupted_load(wh, database, previous)
    if interrupted and interrupted != commit and is_ancestor(lakefs, interrupted, commit):
        if log:
            log(f"the load of {interrupted[:12]} was interrupted before load_log recorded it: finishing it first "
                "(what it inserted is not inserted again)")
        load_lake_commit(wh, database, spark, lakefs, interrupted, log=log)
        previous = interrupted
    _drop_stale_staging(wh, database)
    paths = added_event_files(lakefs.repo(), previous, commit)
    if log:
        log(f"lakeFS {(previous or 'empty')[:12]} → {commit[:12]}: {len(paths)} new event files")
    started = time.monotonic()
    token = f"{previous or 'full'}..{commit}"  # one load: this diff
    if paths:
        wh.command(f"INSERT INTO {qualified(database, 'load_started')} VALUES "
                   f"({sql_str(commit)}, {sql_str(previous or '')}, now64(3, 'UTC'))")
    staged = stage_and_append(wh, database, lakefs, commit, paths, token) if paths else StagedLoad(0, None, None, "")
    events_s = time.monotonic() - started
    if log:
        log(f"ClickHouse loaded {staged.events} events from {len(paths)} files in {events_s:.1f} s")
    started = time.monotonic()
    sessions_loaded, days = 0, []
    if paths and spark is not None and staged.events:
        sessions = _sessionize(wh, database, spark() if callable(spark) else spark, [commit])
        sessions_loaded, days = sessions.num_rows, session_days(sessions)
        record_session_counts(wh, database, commit, sessions)
    sessions_s = time.monotonic() - started
    if log and paths and spark is not None:
        log(f"Spark wrote {sessions_loaded} completed sessions in {sessions_s:.1f} s")
    batches = merged_batches(lakefs.repo(), previous, commit)
    report = LoadReport(commit, previous, len(paths), staged.events, staged.events, sessions_loaded,
                        events_seconds=round(events_s, 3), sessions_seconds=round(sessions_s, 3),
                        batches=len(batches), kafka_records=sum(b.kafka_records for b in batches),
                        kafka_ranges=json.dumps(union_ranges(*(b.ranges for b in batches)), sort_keys=True),
                        lake_events=sum(b.valid_rows for b in batches),
                        quarantined=sum(b.quarantined_rows for b in batches),
                        dropped=sum(b.dropped_rows for b in batches),
                        first_event_ms=staged.first_event_ms, last_event_ms=staged.last_event_ms,
                        preview=staged.preview)
    if paths:
        crashpoint("before_load_recorded")
    record_load(wh, database, report)
    if spark is not None:
        record_sessionized(wh, database, [commit], sessions_loaded, days)
    return report


def interrupted_load(wh, database: str, previous: str | None) -> str | None:
    """The commit a load from ``previous`` (the last one recorded) started to insert and never
    recorded: it was killed in between. One row to read, however many loads there were."""
    rows = wh.query_rows(f"SELECT commit_id, previous_commit FROM {qualified(database, 'load_started')} FINAL")
    if not rows or rows[0][1] != (previous or "") or rows[0][0] == previous:
        return None
    return None if loaded(wh, database, rows[0][0]) else rows[0][0]


# --- sessions of loads made without them ------------------------------------------------------------

@dataclass(frozen=True)
class SessionsReport:
    commits: list[str]  # the loads whose sessions were summarised, oldest first
    sessions_loaded: int
    seconds: float
    through: str | None = None  # the newest load whose sessions are in (this pass's, or an earlier one's)
    days: list[date] = field(default_factory=list)  # the days the written sessions were plugged in on


def unsessionized_commits(wh, database: str) -> list[tuple[str, int]]:
    """(commit, events it loaded) of the loads whose sessions are not summarised yet, oldest first."""
    return [(r.commit, r.events_loaded) for r in _unsessionized(wh, database)]


def _unsessionized(wh, database: str) -> list[LoadReport]:
    return load_log(wh, database, f"commit_id NOT IN (SELECT commit_id FROM {qualified(database, 'session_log')})")


def last_sessionized_commit(wh, database: str) -> str | None:
    """The newest load (in load order) whose sessions are summarised."""
    rows = wh.query_rows(
        f"SELECT commit_id FROM {qualified(database, 'load_log')} FINAL WHERE commit_id IN "
        f"(SELECT commit_id FROM {qualified(database, 'session_log')}) ORDER BY loaded_at DESC, commit_id DESC LIMIT 1")
    return rows[0][0] if rows else None


def record_session_counts(wh, database: str, pass_commit: str, sessions) -> None:
    """Per simulator run, the sessions a pass wrote (Arrow ``sessions``): reconciliation sums these."""
    import pyarrow.compute as pc

    if not sessions.num_rows or "run_id" not in sessions.column_names:
        return
    counts = pc.value_counts(sessions["run_id"]).to_pylist()
    values = ", ".join(f"({sql_str(pass_commit)}, {sql_str(c['values'])}, {c['counts']}, now64(3, 'UTC'))"
                       for c in counts)
    wh.command(f"INSERT INTO {qualified(database, 'session_counts')} (pass_commit, run_id, sessions, counted_at) "
               f"VALUES {values}")


def record_sessionized(wh, database: str, commits: list[str], sessions: int, days: list[date] = ()) -> None:
    """Record the loads of one pass; the last row carries the pass's sessions and days."""
    def row(i: int, c: str) -> str:
        last = i == len(commits) - 1
        day_list = ", ".join(f"toDate('{d.isoformat()}')" for d in sorted(set(days))) if last else ""
        return f"({sql_str(c)}, {sessions if last else 0}, now64(3, 'UTC'), [{day_list}])"

    values = ", ".join(row(i, c) for i, c in enumerate(commits))
    wh.command(f"INSERT INTO {qualified(database, 'session_log')} (commit_id, sessions_loaded, sessionized_at, days) "
               f"VALUES {values}")


def session_days(sessions) -> list[date]:
    """Every day a session of ``sessions`` (Arrow, start_time and end_time) was plugged in on."""
    import pyarrow.compute as pc

    if not sessions.num_rows:
        return []
    starts = pc.cast(sessions["start_time"], "date32").to_pylist()
    ends = pc.cast(sessions["end_time"], "date32").to_pylist()
    days = set()
    for first, last in set(zip(starts, ends)):
        days.update(first + timedelta(days=i) for i in range((last - first).days + 1))
    return sorted(days)


# Loads one sessions pass takes at most, oldest first: a backlog (Spark down for a weekend) is caught
# up in passes of bounded size, and the SQL naming the loads stays far below max_query_size.
MAX_LOADS_PER_PASS = 500
# Events one Spark call summarises, roughly. A pass reads its sessions' events in chunks of whole
# sessions of about this size, one chunk at a time: createDataFrame reads a chunk's Arrow batches
# into the driver's heap (~250 bytes an event), and the Python process holds them too. Measured with
# the default 2 GB driver: 7.6 M events summarised in 103 s, 15.2 M died with "Java heap space". So
# without chunks, the first pass after an hour's backlog at 10,000 events/s would fail on every retry.
MAX_EVENTS_PER_CHUNK = 2_000_000


def _session_chunks(wh, database: str, commits: list[str], indexed: bool) -> int:
    """How many chunks the pass over ``commits`` reads its events in (see ``MAX_EVENTS_PER_CHUNK``):
    one whenever the whole open table fits; else from a count of the pass's own events."""
    if not indexed or _open_rows(wh, database) <= MAX_EVENTS_PER_CHUNK:
        return 1
    return max(1, math.ceil(session_event_count(wh, database, commits) / MAX_EVENTS_PER_CHUNK))


def sessionize_pending(connect: Callable, database: str, spark, log=None) -> SessionsReport:
    """Summarise the sessions of the loads not summarised yet (the oldest ``MAX_LOADS_PER_PASS``) in
    one Spark pass (``spark`` as in :func:`load_lake_commit`: started only when there is something
    to do), in chunks of about ``MAX_EVENTS_PER_CHUNK`` events. ``connect()`` opens the warehouse;
    chDB is held only to read a chunk's events and to write the rows back, never while Spark starts
    or works, so loads of new events go on meanwhile. Recorded last in ``session_log``: a crash
    before it repeats the pass, whose rows collapse under ``FINAL``.

    The report's ``through`` names the newest load whose sessions are in: the pass's own last load
    (read before the pass, so a load that lands meanwhile waits for the next pass), else the last
    one summarised before."""
    import pyarrow as pa
    import pyarrow.compute as pc

    with connect() as wh:
        ensure_tables(wh, database)
        pending = _unsessionized(wh, database)[:MAX_LOADS_PER_PASS]
        with_events = [load for load in pending if load.events_loaded]
        commits = [load.commit for load in with_events]
        if not commits:  # loads that added no event (an empty main, a commit without event files): no Spark
            if pending:
                record_sessionized(wh, database, [load.commit for load in pending], 0)
            return SessionsReport([], 0, 0.0, through=last_sessionized_commit(wh, database))
        # Loads recorded before session_events_open existed have no span: their sessions are searched in the fact.
        indexed = all(load.first_event_ms is not None for load in with_events)
        chunks = _session_chunks(wh, database, commits, indexed)
        events = session_events(wh, database, commits, indexed, (0, chunks))  # the first chunk, in this session
    started = time.monotonic()
    parts, read = [], []
    for i in range(chunks):
        if i:
            with connect() as wh:
                events = session_events(wh, database, commits, indexed, (i, chunks))
        if events.num_rows:
            parts.append(summarise_sessions(spark() if callable(spark) else spark, events, commits[-1]))
            read.append(pc.unique(events["session_id"]))
        events = None  # one chunk in memory at a time
    sessions = pa.concat_tables(parts) if parts else None
    days = session_days(sessions) if sessions is not None else []
    with connect() as wh:
        if sessions is not None and sessions.num_rows:
            wh.insert_arrow(qualified(database, "fact_charging_sessions"), sessions)
            record_session_counts(wh, database, commits[-1], sessions)
        written = sessions.num_rows if sessions is not None else 0
        record_sessionized(wh, database, [load.commit for load in pending], written, days)
        compacted = close_sessions(wh, database, pa.chunked_array(read)) if read else None
    if log and compacted:
        log(f"session_events_open rewritten without its deleted rows: {compacted[0]:,} rows on disk, "
            f"{compacted[1]:,} live")
    seconds = time.monotonic() - started
    if log:
        log(f"Spark wrote {written} completed sessions for {len(commits)} loads in {seconds:.1f} s"
            + (f" ({chunks} chunks of about {MAX_EVENTS_PER_CHUNK:,} events)" if chunks > 1 else ""))
    return SessionsReport(commits, written, round(seconds, 3), through=pending[-1].commit, days=days)
