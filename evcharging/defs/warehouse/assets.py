"""The ClickHouse warehouse: facts loaded from lakeFS main, dimensions, marts.

Every asset here opens and closes its warehouse connection within the step; opening waits for
chDB's directory lock (one process at a time). Most also declare ``pool="warehouse"``, so that
steps queue in Dagster rather than in that wait. The event fact and the time dimension do not:
publish runs load them, in one step and one warehouse session, and a pool slot held by a step that
waits for chDB (a refresh behind a user's query) would stall publishing, whereas the lock wait
gives way after 15 s. The event fact loads exactly what a lakeFS commit added (see
:mod:`evcharging.warehouse.load`) and carries that commit as its data version: ClickHouse reads the
added event files from lakeFS itself. Spark then summarises the sessions in a step of its own, in
its own job, so that starting a JVM never delays the events. Dimensions of the reference data are
rebuilt whole and swapped in; ``dim_time`` is extended; marts recompute only the days the last
sessions passes touched. Re-materializing any of them leaves the same rows. Every figure a step
records comes from what it added or from what is recorded (``load_log``, ``system.parts``), never
from a scan of a table that grows with history.

The event fact has one writer at a time, by construction and on any ClickHouse: it is in the
``fact_events`` pool (limit 1, whatever job materializes it), and the publish and refresh jobs
share a lane. A load picks the commit to load only once it holds the warehouse.
"""


import asyncio
from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
from pydantic import Field

from evcharging.defs.retry import TRANSIENT_RETRY, transient_only
from evcharging.resources.lakefs import LakeFSResource
from evcharging.resources.mongo import MongoResource
from evcharging.resources.spark import SparkResource
from evcharging.resources.warehouse import WarehouseBusyError, WarehouseResource
from evcharging.warehouse.dimensions import extend_dim_time, rebuild_dim_stations, rebuild_dim_vehicles
from evcharging.warehouse.freshness import warehouse_lag
from evcharging.warehouse.load import load_lake_commit, loaded_totals, sessionize_pending
from evcharging.warehouse.marts import MARTS, PREVIEW_WHERE, mart_chart, refresh_mart_from_sessions
from evcharging.warehouse.schema import qualified
from evcharging.warehouse.tables import stored_rows, table_preview

GROUP = "warehouse"
PREFIX = "clickhouse"
FACT_EVENTS = dg.AssetKey([PREFIX, "fact_charging_events"])
FACT_SESSIONS = dg.AssetKey([PREFIX, "fact_charging_sessions"])
DIM_STATIONS = dg.AssetKey([PREFIX, "dim_stations"])
DIM_VEHICLES = dg.AssetKey([PREFIX, "dim_vehicles"])
DIM_TIME = dg.AssetKey([PREFIX, "dim_time"])
LAKE_MAIN = dg.AssetKey("lake_main")
# The main-commit sensor refreshes facts and marts within a minute of each merge while events flow:
# ten minutes without a refresh is worth a warning, thirty a failure (shown on the asset and in the graph).
FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30), warn_window=timedelta(minutes=10))


def _table_metadata(wh, database: str, table: str, order_by: str, where: str = "1") -> dict:
    """Rows from ``system.parts`` and a preview of the rows ``where`` selects (keep it to the newest)."""
    return {
        "dagster/row_count": stored_rows(wh, database, table),
        "dagster/table_name": f"{database}.{table}",
        "preview": dg.MetadataValue.md(table_preview(wh, database, table, order_by,
                                                     where=where.format(t=qualified(database, table)))),
    }


# --- facts -------------------------------------------------------------------------------------------

class WarehouseLoadConfig(dg.Config):
    commit: str | None = Field(None, description="lakeFS commit to load; default: lake_main's latest, else main's head.")
    full_reload: bool = Field(False, description="Re-read every event file of the commit, not just what it added.")
    give_way_after_seconds: float | None = Field(
        None, description="If another process holds the warehouse (chDB) longer than this, do not load (or extend "
                          "dim_time) here: leave it to a refresh. Unset: the run's evcharging/give_way_after_seconds "
                          "tag (publish runs have it, so that publishing waits only that long on warehouse work), "
                          "else as long as the warehouse resource says.")


def target_commit(context: dg.AssetExecutionContext, config: WarehouseLoadConfig, lakefs: LakeFSResource) -> str:
    """The commit to load: the config's, else the one ``lake_main`` last recorded, else main's head.
    Called only once the warehouse is held, so no other load can pass it in between."""
    if config.commit:
        return config.commit
    event = context.instance.get_latest_materialization_event(LAKE_MAIN)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if "lakefs_commit" in metadata:
        return str(metadata["lakefs_commit"].value)
    return lakefs.repo().branch(lakefs.default_branch).get_commit().id


GIVE_WAY_TAG = "evcharging/give_way_after_seconds"  # set on the events lane's jobs (evcharging.defs.lake.jobs)


def _give_way_after(context: dg.AssetExecutionContext, configured: float | None) -> float | None:
    """How long a load waits for a warehouse another process holds: the config's, else the run's tag."""
    if configured is not None:
        return configured
    tagged = context.run.tags.get(GIVE_WAY_TAG)
    return float(tagged) if tagged else None


_FACT_EVENTS_DOC = """Every charging event on lakeFS main, loaded by ClickHouse straight from the Parquet files each
main commit added (read at the commit id over lakeFS's S3 gateway; one ``s3()`` per file, no Spark);
one row per event (ReplacingMergeTree on the event's identity, read with FINAL), sorted by station
and time for time-series queries; filter event_type = 'charging_progress' for the progress curve.
Its data version is the lakeFS commit loaded; the events are queryable when the step ends. The
row count is the sum of every load's events (``load_log``); the preview shows this load's newest."""

_DIM_TIME_DOC = """One row per hour from the first arrival to the last event: date parts, weekday, weekend.
Extended by the hours the loads reached (from ``load_log``), never rebuilt; in the same step and
warehouse session as the events' load."""


# One step loads the events and extends dim_time, in one warehouse session: opening and closing chDB
# costs what its parts cost (and closing lets merges finish), so a publish run pays it once.
# skippable: a publish run that gives way to a busy warehouse records no load (and dim_time catches
# up in the next run). pool="fact_events": one writer of the fact at a time, whichever job (or a
# hand-made run) loads it. can_subset: dim_time alone (by hand) extends it without loading.
@dg.multi_asset(
    name="load_charging_events", can_subset=True, retry_policy=TRANSIENT_RETRY, pool="fact_events",
    specs=[dg.AssetSpec(FACT_EVENTS, deps=[LAKE_MAIN], group_name=GROUP, kinds={"clickhouse", "lakefs"},
                        freshness_policy=FRESHNESS, skippable=True, description=_FACT_EVENTS_DOC),
           dg.AssetSpec(DIM_TIME, deps=[FACT_EVENTS], group_name=GROUP, kinds={"clickhouse"}, skippable=True,
                        description=_DIM_TIME_DOC)])
@transient_only
def load_charging_events(context: dg.AssetExecutionContext, config: WarehouseLoadConfig, lakefs: LakeFSResource,
                         warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
    """Load the events main's commit added into ``fact_charging_events``, then extend ``dim_time``
    to the hours they reach, holding the warehouse once for both."""
    db = warehouse.database
    load, extend = FACT_EVENTS in context.selected_asset_keys, DIM_TIME in context.selected_asset_keys
    give_way = _give_way_after(context, config.give_way_after_seconds)
    try:
        with warehouse.connect(on_wait=context.log.info, wait_seconds=give_way) as wh:
            if load:
                commit = target_commit(context, config, lakefs)  # chosen while holding the warehouse
                report = load_lake_commit(wh, db, None, lakefs, commit, config.full_reload, log=context.log.info)
                total, _ = loaded_totals(wh, db)
                lag = warehouse_lag(wh, db, lakefs, report.commit).metadata()  # plotted over materializations
            if extend:
                added = extend_dim_time(wh, db)
                time_metadata = _table_metadata(wh, db, "dim_time", "hour DESC")
    except WarehouseBusyError as busy:
        if give_way is None:
            raise
        context.log.warning(f"{busy}: the load and dim_time are left to a later run of the events lane "
                            "(main_commits asks for it)")
        return
    if load:
        yield _events_result(context, db, lakefs, report, total, lag)
    if extend:
        yield dg.MaterializeResult(asset_key=DIM_TIME, metadata={**time_metadata, "hours_added": added})


def _events_result(context: dg.AssetExecutionContext, db: str, lakefs: LakeFSResource, report, total: int,
                   lag: dict) -> dg.MaterializeResult:
    if report.already_loaded:
        context.log.info(f"the warehouse already holds {report.commit[:12]}: nothing to do")
    # report.commit is what the warehouse now holds: the target, or a newer commit an earlier load reached
    commit = report.commit
    return dg.MaterializeResult(asset_key=FACT_EVENTS, data_version=dg.DataVersion(commit), metadata={
        "dagster/row_count": total, "dagster/table_name": f"{db}.fact_charging_events",
        "preview": dg.MetadataValue.md(report.preview or "(no new events in this load)"), **lag,
        "lakefs_commit": commit, "lakefs_url": dg.MetadataValue.url(lakefs.commit_url(commit)),
        "previous_commit": report.previous_commit or "none", "files_added": report.files,
        "already_loaded": report.already_loaded, "events_read": report.events_read,
        "events_loaded": report.events_loaded, "batches_loaded": report.batches,
        "events_seconds": dg.MetadataValue.float(report.events_seconds),
        "events_per_second": round(report.events_loaded / report.events_seconds) if report.events_seconds else 0})


# No pool: this step holds chDB only while it reads and writes (opening it waits for the lock), not
# while Spark works, so the events keep loading meanwhile.
@dg.asset(key=FACT_SESSIONS, deps=[FACT_EVENTS], group_name=GROUP, kinds={"spark", "clickhouse"},
          freshness_policy=FRESHNESS, retry_policy=TRANSIENT_RETRY)
@transient_only
def fact_charging_sessions(context: dg.AssetExecutionContext, spark: SparkResource,
                           warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One row per completed charging session, summarised by Spark from the session's events in the
    warehouse: station, vehicle and model, exact start/end (ms, UTC), duration, energy, average and
    peak power, SoC, end reason, waiting time before plug-in. Each run summarises every load since
    the last one in one pass (Spark starts only if there is one); its data version is the newest
    lakeFS commit whose sessions are in."""
    db = warehouse.database
    report = sessionize_pending(lambda: warehouse.connect(on_wait=context.log.info), db, lambda: spark.spark_session,
                                log=context.log.info)
    with warehouse.connect(on_wait=context.log.info) as wh:
        # the newest hour of sessions (max(start_time) comes from the parts' partition metadata)
        metadata = _table_metadata(wh, db, "fact_charging_sessions", "end_time DESC, session_id",
                                   where="start_time >= (SELECT max(start_time) FROM {t}) - INTERVAL 1 HOUR")
    # The loads this pass summarised (read before it): one that landed during the pass is not covered.
    return dg.MaterializeResult(data_version=dg.DataVersion(report.through or "empty"), metadata={
        **metadata, "lakefs_commit": report.through or "none", "loads_summarised": len(report.commits),
        "sessions_written": report.sessions_loaded, "days_touched": len(report.days),
        "sessions_seconds": dg.MetadataValue.float(report.seconds)})


# --- dimensions --------------------------------------------------------------------------------------

async def _documents(mongo: MongoResource, collection: str) -> list[dict]:
    async with mongo.open_database() as db:
        return await db[collection].find({}).to_list(None)


@dg.asset(key=DIM_STATIONS, deps=[dg.AssetKey(["mongodb", "stations"])], group_name=GROUP,
          kinds={"mongodb", "clickhouse"}, pool="warehouse", automation_condition=dg.AutomationCondition.eager(),
          retry_policy=TRANSIENT_RETRY)
@transient_only
def dim_stations(mongo: MongoResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Charging stations from the MongoDB reference data: city, operator, charger type, deliverable
    power, price per kWh, chargers (parking spots), location. Rebuilt whole from the collection."""
    documents = asyncio.run(_documents(mongo, "stations"))
    with warehouse.connect() as wh:
        rebuild_dim_stations(wh, warehouse.database, documents)
        return dg.MaterializeResult(metadata=_table_metadata(wh, warehouse.database, "dim_stations", "station_id"))


@dg.asset(key=DIM_VEHICLES, deps=[dg.AssetKey(["mongodb", "vehicles"])], group_name=GROUP,
          kinds={"mongodb", "clickhouse"}, pool="warehouse", automation_condition=dg.AutomationCondition.eager(),
          retry_policy=TRANSIENT_RETRY)
@transient_only
def dim_vehicles(mongo: MongoResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Vehicle models from the MongoDB reference data (key ``vehicle_model_id``, the model's ``_id``,
    which every event carries): battery, efficiency, AC/DC limits, connectors, price, range."""
    documents = asyncio.run(_documents(mongo, "vehicles"))
    with warehouse.connect() as wh:
        rebuild_dim_vehicles(wh, warehouse.database, documents)
        return dg.MaterializeResult(metadata=_table_metadata(wh, warehouse.database, "dim_vehicles", "vehicle_model_id"))


# --- marts -------------------------------------------------------------------------------------------

_MART_DOCS = {
    "mart_station_hourly_utilisation": "Per station and hour: sessions, plugged-in seconds, utilisation "
    "(plugged-in time over chargers × 3600 s) and energy delivered.",
    "mart_daily_energy_by_city_operator": "Per day, city and operator: sessions, vehicles, energy, revenue "
    "(energy × the station's price), average duration and wait.",
    "mart_charger_type_kpis": "Per charger type: stations and chargers in service (retired stations left out) and "
    "their utilisation over the whole time range; sessions, energy, average and peak power, duration, average "
    "and p95 wait and fault rate of every session, also at stations retired since.",
}


def _newer(instance: dg.DagsterInstance, key: dg.AssetKey, than: dg.AssetKey) -> bool:
    """Whether ``key`` was materialized after ``than`` last was (or ``than`` never was)."""
    mine, theirs = (instance.get_latest_materialization_event(k) for k in (than, key))
    return bool(theirs) and (not mine or theirs.timestamp > mine.timestamp)


def _mart(name: str) -> dg.AssetsDefinition:
    order_by = MARTS[name][1]

    @dg.asset(key=[PREFIX, name], deps=[FACT_SESSIONS, DIM_STATIONS, DIM_TIME], group_name=GROUP,
              kinds={"clickhouse"}, pool="warehouse", description=_MART_DOCS[name] + " Recomputed for the days "
              "the sessions passes since its last refresh touched; in full after a reference reload.",
              freshness_policy=FRESHNESS)
    def mart(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        full = _newer(context.instance, DIM_STATIONS, context.asset_key)  # the stations changed since
        with warehouse.connect() as wh:
            refresh = refresh_mart_from_sessions(wh, warehouse.database, name, full=full)
            metadata = _table_metadata(wh, warehouse.database, name, order_by, where=PREVIEW_WHERE[name])
            metadata["chart"] = dg.MetadataValue.md(mart_chart(wh, warehouse.database, name))
        days = refresh.days
        metadata["days_recomputed"] = "all" if days is None else len(days)
        if days:
            metadata["days"] = ", ".join(d.isoformat() for d in days[:31]) + (" …" if len(days) > 31 else "")
        return dg.MaterializeResult(metadata=metadata)

    return mart


mart_station_hourly_utilisation = _mart("mart_station_hourly_utilisation")
mart_daily_energy_by_city_operator = _mart("mart_daily_energy_by_city_operator")
mart_charger_type_kpis = _mart("mart_charger_type_kpis")
