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
   ones: the warehouse's own event fact is re-read, as Arrow, for every session this load touched
   that has ended. Re-reading from the warehouse rather than from ``main`` is a point lookup (bloom
   index on ``session_id``) instead of a scan of the whole lake, and the warehouse already holds
   every earlier event.
4. ``load_log`` records the commit last, so a crash before it simply repeats the load; both facts
   are ``ReplacingMergeTree`` keyed by the row's identity, so the repeat collapses under ``FINAL``.

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
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from evcharging.contracts import lake_event_columns
from evcharging.crashpoints import crashpoint
from evcharging.lake.main import LakeHistoryError, added_event_files
from evcharging.warehouse.lineage import merged_batches, union_ranges
from evcharging.warehouse.schema import ensure_tables, event_column_types, optional_fields, qualified, rescued_value

__all__ = [
    "EVENT_FILES_PER_INSERT", "EventLoadError", "LakeHistoryError", "LoadReport", "event_insert_sql",
    "SessionsReport", "last_loaded_commit", "load_event_files", "load_lake_commit", "load_log", "loaded", "record_load",
    "sessionize", "sessionize_pending", "unsessionized_commits",
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

    def metadata(self) -> dict:
        return {k: ("" if v is None else v) for k, v in asdict(self).items()}


class EventLoadError(RuntimeError):
    """ClickHouse could not load the event files (the message never holds the lakeFS credentials)."""


def _sql_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def last_loaded_commit(wh, database: str) -> str | None:
    rows = wh.query_rows(f"SELECT commit_id FROM {qualified(database, 'load_log')} FINAL "
                         "ORDER BY loaded_at DESC, commit_id LIMIT 1")
    return rows[0][0] if rows else None


_COUNTS = ("files", "events_read", "events_loaded", "sessions_loaded", "batches", "kafka_records", "lake_events",
           "quarantined", "dropped")


def loaded(wh, database: str, commit: str) -> LoadReport | None:
    """The record of an earlier load of ``commit``, or None."""
    rows = load_log(wh, database, f"commit_id = {_sql_str(commit)}")
    return rows[0] if rows else None


def load_log(wh, database: str, where: str = "1") -> list[LoadReport]:
    """The loads recorded in ``load_log`` (``where``: an SQL condition), oldest first."""
    rows = wh.query_df(
        f"SELECT commit_id, previous_commit, kafka_ranges, {', '.join(_COUNTS)} "
        f"FROM {qualified(database, 'load_log')} FINAL WHERE {where} ORDER BY loaded_at, commit_id")
    return [LoadReport(commit=r.commit_id, previous_commit=r.previous_commit or None, kafka_ranges=r.kafka_ranges or "{}",
                       already_loaded=True, **{k: int(getattr(r, k)) for k in _COUNTS})
            for r in rows.itertuples(index=False)]


def record_load(wh, database: str, report: LoadReport) -> None:
    counts = ", ".join(str(getattr(report, k)) for k in _COUNTS)
    wh.command(
        f"INSERT INTO {qualified(database, 'load_log')} "
        f"(commit_id, previous_commit, kafka_ranges, {', '.join(_COUNTS)}, loaded_at) VALUES "
        f"({_sql_str(report.commit)}, {_sql_str(report.previous_commit or '')}, {_sql_str(report.kafka_ranges)}, "
        f"{counts}, now64(3, 'UTC'))")


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


def event_insert_sql(database: str, lakefs, commit: str, paths: list[str], endpoint: str | None = None) -> str:
    """One ``INSERT … SELECT`` of the given event files of ``commit`` (holds the lakeFS credentials);
    ``endpoint``: lakeFS's S3 gateway as ClickHouse reaches it, when not at ``lakefs.endpoint``."""
    columns = ", ".join(f"`{c}`" for c in lake_event_columns())
    # A file written before the contract knew a field has it only among the rescued fields.
    optional = optional_fields()
    values = ", ".join(f"ifNull(`{c}`, {rescued_value(optional[c])}) AS `{c}`" if c in optional else f"`{c}`"
                       for c in lake_event_columns())
    credentials = f"{_sql_str(lakefs.access_key_id)}, {_sql_str(lakefs.secret_access_key)}"
    structure = _sql_str(_file_structure())
    files = "\nUNION ALL ".join(
        f"SELECT * FROM s3({_sql_str(_file_url(lakefs, commit, p, endpoint))}, {credentials}, 'Parquet', {structure})"
        for p in paths)
    # optimize_on_insert = 0: collapsing duplicates within each inserted block halves the insert's
    # speed and guarantees nothing (FINAL and merges collapse across blocks and parts anyway).
    # use_hive_partitioning = 0: the file's columns only, whatever its directory is called.
    return (f"INSERT INTO {qualified(database, 'fact_charging_events')} ({columns}, `load_commit`)\n"
            f"SELECT {values}, {_sql_str(commit)} AS `load_commit` FROM (\n{files})\n"
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


def run_masking_secrets(run: Callable[[str], int], sql: str, secrets: list[str]) -> int:
    """``run(sql)``; on failure an :class:`EventLoadError` whose message has ``secrets`` masked.

    The new error is raised outside the ``except`` block, so it carries no ``__context__`` that
    would show the original message (ClickHouse quotes the SQL in syntax errors)."""
    try:
        return run(sql)
    except Exception as exc:  # any backend's error, re-raised masked below
        failure = f"{type(exc).__name__}: {_masked(str(exc), secrets)}"
    raise EventLoadError(f"warehouse: loading event files from lakeFS failed: {failure[:4000]}")


def load_event_files(wh, database: str, lakefs, commit: str, paths: list[str],
                     files_per_insert: int = EVENT_FILES_PER_INSERT) -> tuple[int, int]:
    """Insert the rows of the given event files of ``commit`` into ``fact_charging_events``, tagged
    with ``load_commit = commit``; return ``(events_read, events_loaded)`` (see :class:`LoadReport`).

    ClickHouse (chDB or the server behind ``wh``) reads the files over lakeFS's S3 gateway itself (at
    ``wh.lakefs_endpoint`` when the server reaches lakeFS elsewhere), in INSERTs of at most
    ``files_per_insert`` files each."""
    secrets = [lakefs.secret_access_key, lakefs.access_key_id]
    written = 0
    endpoint = wh.lakefs_endpoint
    for chunk in _chunks(database, lakefs, commit, paths, files_per_insert, endpoint):
        sql = event_insert_sql(database, lakefs, commit, chunk, endpoint)
        written += run_masking_secrets(wh.insert_select, sql, secrets)
    return written, written


# --- phase 2: sessions, Spark summarising the warehouse's events ------------------------------------

def _session_events_sql(database: str, commits: str | list[str]) -> str:
    events = qualified(database, "fact_charging_events")
    casts = {"contract_version": "toInt64(contract_version)", "seq": "toInt64(seq)",
             "kafka_partition": "toInt32(kafka_partition)", "vehicle_model_id": "nullIf(vehicle_model_id, '')"}
    columns = ", ".join(f"{casts.get(n, f'`{n}`')} AS `{n}`" for n, _ in event_column_types() if n != "load_commit")
    loads = ", ".join(_sql_str(c) for c in ([commits] if isinstance(commits, str) else commits))
    # Sessions touched by these loads that have ended (in one of them or an earlier one).
    return f"""
SELECT {columns} FROM {events} FINAL
WHERE session_id IN (
    SELECT session_id FROM {events}
    WHERE session_id IN (SELECT session_id FROM {events} WHERE load_commit IN ({loads}))
    GROUP BY session_id HAVING countIf(event_type = 'session_ended') > 0)"""


def sessionize(wh, database: str, spark, commits: str | list[str]) -> int:
    """(Re)write ``fact_charging_sessions`` for the sessions the events of ``commits`` (the loads'
    commits) touched that have ended; return the number of session rows written.

    Their events come from the warehouse as Arrow (timestamps stay ms-exact, UInt columns are cast to
    the signed types the transform expects, LowCardinality arrives as plain strings), Spark
    summarises them, and the rows go back as Arrow."""
    events = wh.query_arrow(_session_events_sql(database, commits))
    if not events.num_rows:
        return 0
    sessions = summarise_sessions(spark, events, commits if isinstance(commits, str) else commits[-1])
    if sessions.num_rows:
        wh.insert_arrow(qualified(database, "fact_charging_sessions"), sessions)
    return sessions.num_rows


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
    only the events are loaded; :func:`sessionize_pending` summarises their sessions later."""
    ensure_tables(wh, database)
    done = loaded(wh, database, commit)
    if done and not full_reload:
        return done
    previous = None if full_reload else last_loaded_commit(wh, database)
    paths = added_event_files(lakefs.repo(), previous, commit)
    if log:
        log(f"lakeFS {(previous or 'empty')[:12]} → {commit[:12]}: {len(paths)} new event files")
    started = time.monotonic()
    read, events_loaded = load_event_files(wh, database, lakefs, commit, paths) if paths else (0, 0)
    events_s = time.monotonic() - started
    if log:
        log(f"ClickHouse loaded {events_loaded} events from {len(paths)} files in {events_s:.1f} s")
    started = time.monotonic()
    sessions_loaded = 0
    if paths and spark is not None:
        sessions_loaded = sessionize(wh, database, spark() if callable(spark) else spark, commit)
    sessions_s = time.monotonic() - started
    if log and paths and spark is not None:
        log(f"Spark wrote {sessions_loaded} completed sessions in {sessions_s:.1f} s")
    batches = merged_batches(lakefs.repo(), previous, commit)
    report = LoadReport(commit, previous, len(paths), read, events_loaded, sessions_loaded,
                        events_seconds=round(events_s, 3), sessions_seconds=round(sessions_s, 3),
                        batches=len(batches), kafka_records=sum(b.kafka_records for b in batches),
                        kafka_ranges=json.dumps(union_ranges(*(b.ranges for b in batches)), sort_keys=True),
                        lake_events=sum(b.valid_rows for b in batches),
                        quarantined=sum(b.quarantined_rows for b in batches),
                        dropped=sum(b.dropped_rows for b in batches))
    if paths:
        crashpoint("before_load_recorded")
    record_load(wh, database, report)
    if spark is not None:
        record_sessionized(wh, database, [commit], sessions_loaded)
    return report


# --- sessions of loads made without them ------------------------------------------------------------

@dataclass(frozen=True)
class SessionsReport:
    commits: list[str]  # the loads whose sessions were summarised, oldest first
    sessions_loaded: int
    seconds: float


def unsessionized_commits(wh, database: str) -> list[tuple[str, int]]:
    """(commit, events it loaded) of the loads whose sessions are not summarised yet, oldest first."""
    rows = wh.query_rows(
        f"SELECT commit_id, events_loaded FROM {qualified(database, 'load_log')} FINAL "
        f"WHERE commit_id NOT IN (SELECT commit_id FROM {qualified(database, 'session_log')}) "
        "ORDER BY loaded_at, commit_id")
    return [(c, int(n)) for c, n in rows]


def record_sessionized(wh, database: str, commits: list[str], sessions: int) -> None:
    values = ", ".join(f"({_sql_str(c)}, {sessions if i == len(commits) - 1 else 0}, now64(3, 'UTC'))"
                       for i, c in enumerate(commits))
    wh.command(f"INSERT INTO {qualified(database, 'session_log')} (commit_id, sessions_loaded, sessionized_at) "
               f"VALUES {values}")


def sessionize_pending(connect: Callable, database: str, spark, log=None) -> SessionsReport:
    """Summarise the sessions of every load not summarised yet, in one Spark pass (``spark`` as in
    :func:`load_lake_commit`: started only when there is something to do). ``connect()`` opens the
    warehouse; chDB is held only to read the sessions' events and to write the rows back, never
    while Spark starts or works, so loads of new events go on meanwhile. Recorded last in
    ``session_log``: a crash before it repeats the pass, whose rows collapse under ``FINAL``."""
    with connect() as wh:
        ensure_tables(wh, database)
        pending = unsessionized_commits(wh, database)
        commits = [c for c, events in pending if events]
        events = wh.query_arrow(_session_events_sql(database, commits)) if commits else None
        if not commits:  # loads that added no event (an empty main, a commit without event files): no Spark
            if pending:
                record_sessionized(wh, database, [c for c, _ in pending], 0)
            return SessionsReport([], 0, 0.0)
    started = time.monotonic()
    sessions = summarise_sessions(spark() if callable(spark) else spark, events, commits[-1]) if events.num_rows else None
    with connect() as wh:
        if sessions is not None and sessions.num_rows:
            wh.insert_arrow(qualified(database, "fact_charging_sessions"), sessions)
        written = sessions.num_rows if sessions is not None else 0
        record_sessionized(wh, database, [c for c, _ in pending], written)
    seconds = time.monotonic() - started
    if log:
        log(f"Spark wrote {written} completed sessions for {len(commits)} loads in {seconds:.1f} s")
    return SessionsReport(commits, written, round(seconds, 3))
