"""Jobs the sensors launch (also runnable by hand from the UI).

Warehouse work runs in two lanes: the events (no Spark: queryable seconds after a merge) and the
sessions with the marts (Spark), each coalesced by its sensor. Each job runs its steps in one
process (``in_process_executor``): its steps are light next to a process start-up each (~3 s of
imports), and a step that needs Spark starts it once per run. A tag per lane lets
``dagster.yaml`` limit each lane to one running run, so warehouse work never holds the slots
publishing needs.
"""

import dagster as dg

from evcharging.defs.warehouse.assets import FACT_EVENTS, FACT_SESSIONS

LANE = "evcharging/lane"
RECONCILIATION = dg.AssetCheckKey(FACT_EVENTS, "reconciliation")

publish_ingest_batches = dg.define_asset_job(
    "publish_ingest_batches", selection=dg.AssetSelection.assets("ingest_batch"),
    executor_def=dg.in_process_executor, tags={LANE: "publish"},
    description="Audit ingest batches (one, or a range in order) and merge each into main when its blocking "
                "checks pass.")

# The sessions and everything after them: Spark's start-up stays out of the events' path.
_SESSIONS_ON = dg.AssetSelection.assets(FACT_SESSIONS).downstream() - dg.AssetSelection.checks(RECONCILIATION)

refresh_lake_main = dg.define_asset_job(
    "refresh_lake_main",
    selection=dg.AssetSelection.assets("lake_main").downstream() - _SESSIONS_ON - dg.AssetSelection.checks(RECONCILIATION),
    executor_def=dg.in_process_executor, tags={LANE: "refresh"},
    description="Record main's head commit and load the events up to it into the warehouse (queryable when it "
                "ends), with the time dimension.")

refresh_sessions = dg.define_asset_job(
    "refresh_sessions", selection=_SESSIONS_ON, executor_def=dg.in_process_executor, tags={LANE: "sessions"},
    description="Summarise the sessions of every load since the last time (Spark), then rebuild the marts.")

reconcile_warehouse = dg.define_asset_job(
    "reconcile_warehouse", selection=dg.AssetSelection.checks(RECONCILIATION),
    executor_def=dg.in_process_executor, tags={LANE: "reconcile"},
    description="Reconcile each simulator run's manifest with the lake and the warehouse, from recorded counts.")
