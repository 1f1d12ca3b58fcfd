"""Load what a lakeFS commit of ``main`` added into the warehouse facts, keyed by that commit.

One load:

1. ``load_log`` names the last commit loaded; the lakeFS diff from it to the new commit lists the
   event files the new commit added (the lake is append-only: a removed or changed file means
   ``main``'s history was rewritten, and the load stops rather than guess). The first load lists
   every event file of the commit.
2. Spark reads only those files *at that commit* (a commit id is an immutable ref), collapses
   duplicate ``event_id``s and appends them to ``fact_charging_events``.
3. Sessions are summarised over ALL their events, not just the new ones: the warehouse's own
   event fact is re-read for every session this load touched that has ended. Re-reading from the
   warehouse rather than from ``main`` is a point lookup (bloom index on ``session_id``) instead of
   a scan of the whole lake, and the warehouse already holds every earlier event deduplicated.
4. ``load_log`` records the commit last, so a crash before it simply repeats the load; both facts
   are ``ReplacingMergeTree`` keyed by the row's identity, so the repeat collapses.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from evcharging.contracts import LAKE_EVENTS_PATH
from evcharging.lake.main import LakeHistoryError, added_event_files
from evcharging.warehouse.schema import ensure_tables, event_column_types, qualified

__all__ = [
    "LakeHistoryError", "LoadReport", "last_loaded_commit", "load_events",
    "load_lake_commit", "loaded", "record_load",
]  # fmt: skip


@dataclass(frozen=True)
class LoadReport:
    commit: str
    previous_commit: str | None
    files: int
    events_read: int
    events_loaded: int
    sessions_loaded: int
    already_loaded: bool = False

    def metadata(self) -> dict:
        return {k: ("" if v is None else v) for k, v in asdict(self).items()}


def _sql_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def last_loaded_commit(wh, database: str) -> str | None:
    rows = wh.query_rows(f"SELECT commit_id FROM {qualified(database, 'load_log')} FINAL "
                         "ORDER BY loaded_at DESC, commit_id LIMIT 1")
    return rows[0][0] if rows else None


def loaded(wh, database: str, commit: str) -> LoadReport | None:
    """The record of an earlier load of ``commit``, or None."""
    rows = wh.query_rows(
        "SELECT commit_id, previous_commit, files, events_read, events_loaded, sessions_loaded "
        f"FROM {qualified(database, 'load_log')} FINAL WHERE commit_id = {_sql_str(commit)}")
    if not rows:
        return None
    c, prev, files, read, events, sessions = rows[0]
    return LoadReport(c, prev or None, int(files), int(read), int(events), int(sessions), already_loaded=True)


def record_load(wh, database: str, report: LoadReport) -> None:
    wh.command(
        f"INSERT INTO {qualified(database, 'load_log')} "
        "(commit_id, previous_commit, files, events_read, events_loaded, sessions_loaded, loaded_at) VALUES "
        f"({_sql_str(report.commit)}, {_sql_str(report.previous_commit or '')}, {report.files}, "
        f"{report.events_read}, {report.events_loaded}, {report.sessions_loaded}, now64(3, 'UTC'))")


def read_lake_events(spark, lakefs, commit: str, paths: list[str]):
    """The given event files of ``commit`` as one DataFrame (with the ``event_date`` partition column)."""
    base = lakefs.s3a_uri(commit, LAKE_EVENTS_PATH)
    # mergeSchema: files written before the contract gained a (nullable) column still read, with nulls.
    return spark.read.option("basePath", base).option("mergeSchema", "true").parquet(*[lakefs.s3a_uri(commit, p) for p in paths])


def _session_events_sql(database: str, commit: str) -> str:
    events = qualified(database, "fact_charging_events")
    casts = {"contract_version": "toInt64(contract_version)", "seq": "toInt64(seq)",
             "kafka_partition": "toInt32(kafka_partition)", "vehicle_model_id": "nullIf(vehicle_model_id, '')"}
    columns = ", ".join(f"{casts.get(n, f'`{n}`')} AS `{n}`" for n, _ in event_column_types() if n != "load_commit")
    # Sessions touched by this load that have ended (in this load or an earlier one).
    return f"""
SELECT {columns} FROM {events} FINAL
WHERE session_id IN (
    SELECT session_id FROM {events}
    WHERE session_id IN (SELECT session_id FROM {events} WHERE load_commit = {_sql_str(commit)})
    GROUP BY session_id HAVING countIf(event_type = 'session_ended') > 0)"""


def load_events(wh, database: str, spark, lake_events, commit: str) -> tuple[int, int]:
    """Append the events of one load and (re)write the sessions they complete; returns their counts.

    ``lake_events`` are lake rows (contract columns, Kafka coordinates); nothing here needs lakeFS,
    which is what the tests use.
    """
    import pyarrow as pa
    from pyspark.sql import functions as F

    from evcharging.transforms.sessions import charging_sessions, clean_events

    events = clean_events(lake_events).withColumn("load_commit", F.lit(commit))
    arrow = events.toArrow()
    if arrow.num_rows:
        wh.insert_arrow(qualified(database, "fact_charging_events"), arrow)
    stored = wh.query_df(_session_events_sql(database, commit))
    if not len(stored):
        return arrow.num_rows, 0
    session_events = spark.createDataFrame(pa.Table.from_pandas(stored, preserve_index=False))
    sessions = charging_sessions(session_events, deduplicated=True).withColumn("load_commit", F.lit(commit)).toArrow()
    if sessions.num_rows:
        wh.insert_arrow(qualified(database, "fact_charging_sessions"), sessions)
    return arrow.num_rows, sessions.num_rows


def load_lake_commit(wh, database: str, spark, lakefs, commit: str, full_reload: bool = False,
                     log=None) -> LoadReport:
    """Bring the warehouse facts up to lakeFS commit ``commit`` (see the module docstring)."""
    ensure_tables(wh, database)
    done = loaded(wh, database, commit)
    if done and not full_reload:
        return done
    previous = None if full_reload else last_loaded_commit(wh, database)
    started = time.monotonic()
    paths = added_event_files(lakefs.repo(), previous, commit)
    if log:
        log(f"lakeFS {(previous or 'empty')[:12]} → {commit[:12]}: {len(paths)} new event files")
    read = events_loaded = sessions_loaded = 0
    if paths:
        lake = read_lake_events(spark, lakefs, commit, paths)
        read = lake.count()
        events_loaded, sessions_loaded = load_events(wh, database, spark, lake, commit)
    report = LoadReport(commit, previous, len(paths), read, events_loaded, sessions_loaded)
    record_load(wh, database, report)
    if log:
        log(f"loaded {events_loaded} events, {sessions_loaded} completed sessions in {time.monotonic() - started:.1f} s")
    return report
