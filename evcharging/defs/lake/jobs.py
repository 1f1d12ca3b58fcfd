"""Jobs the sensors launch (also runnable by hand from the UI).

The hot path is one run: a publish run audits and merges the pending ingest batches, then records
main's head and loads the events up to it (no Spark), so events are queryable when it ends — one
run start-up and one lane between an ingest commit and ClickHouse, not two. The refresh job does
that last part alone, for merges made outside a publish run (a partition materialized by hand) or
a load that failed. The sessions with the marts (Spark) run in a lane of their own, coalesced by
their sensor. Each job runs its steps in one process (``in_process_executor``): its steps are
light next to a process start-up each (~3 s of imports), and a step that needs Spark starts it
once per run. A tag per lane lets ``dagster.yaml`` limit each lane to one running run, so
warehouse work never holds the slots publishing needs. Publish and refresh both write the event
fact, so they share one lane (``events``): the run queue runs one of them at a time, whatever the
ClickHouse behind them (a server has no chDB lock to keep two loads apart), and the fact's pool
keeps hand-made runs out of the way too.
"""

import dagster as dg

from evcharging.defs.warehouse.assets import FACT_EVENTS, FACT_SESSIONS, GIVE_WAY_TAG

LANE = "evcharging/lane"
RECONCILIATION = dg.AssetCheckKey(FACT_EVENTS, "reconciliation")
FULL_AUDIT = dg.AssetCheckKey(FACT_EVENTS, "full_audit")

# The sessions and everything after them: Spark's start-up stays out of the events' path.
_CHECKS = dg.AssetSelection.checks(RECONCILIATION, FULL_AUDIT)
_SESSIONS_ON = dg.AssetSelection.assets(FACT_SESSIONS).downstream() - _CHECKS
# main's head and the events up to it (and the time dimension): light, no Spark.
_EVENTS = dg.AssetSelection.assets("lake_main").downstream() - _SESSIONS_ON - _CHECKS

# A run of the events lane waits this long at most for a warehouse another process holds (a sessions
# pass, a user's query), then records no load (main_commits asks again): the lane is never held longer,
# so publishing waits at most this long on warehouse work.
PUBLISH_GIVES_WAY_AFTER_S = 15
# Runs the monitoring daemon ends if they run longer (a hung step must not stop its lane for good).
MAX_RUNTIME = "dagster/max_runtime"

publish_ingest_batches = dg.define_asset_job(
    "publish_ingest_batches", selection=dg.AssetSelection.assets("ingest_batch") | _EVENTS,
    # A tag, not run config: the job's run config would be per partition, and lost on a run of a subset.
    executor_def=dg.in_process_executor,
    tags={LANE: "events", MAX_RUNTIME: "900", GIVE_WAY_TAG: str(PUBLISH_GIVES_WAY_AFTER_S)},
    description="Audit ingest batches (one, or a range in order) and merge each into main when its blocking "
                "checks pass; then record main's head and load the events up to it into the warehouse.")

refresh_lake_main = dg.define_asset_job(
    "refresh_lake_main", selection=_EVENTS, executor_def=dg.in_process_executor,
    tags={LANE: "events", MAX_RUNTIME: "900", GIVE_WAY_TAG: str(PUBLISH_GIVES_WAY_AFTER_S)},
    description="Record main's head commit and load the events up to it into the warehouse (queryable when it "
                "ends), with the time dimension.")

refresh_sessions = dg.define_asset_job(
    "refresh_sessions", selection=_SESSIONS_ON, executor_def=dg.in_process_executor,
    tags={LANE: "sessions", MAX_RUNTIME: "1800"},
    description="Summarise the sessions of every load since the last time (Spark), then rebuild the marts.")

reconcile_warehouse = dg.define_asset_job(
    "reconcile_warehouse", selection=dg.AssetSelection.checks(RECONCILIATION),
    executor_def=dg.in_process_executor, tags={LANE: "bookkeeping", MAX_RUNTIME: "900"},
    description="Reconcile the loads since the last reconciliation, and each simulator run's manifest, with the lake "
                "and the warehouse, from recorded counts.")

audit_warehouse = dg.define_asset_job(
    "audit_warehouse", selection=dg.AssetSelection.checks(FULL_AUDIT), executor_def=dg.in_process_executor,
    tags={LANE: "bookkeeping"},
    description="Full audit, run by hand: the reconciliation against every row of the facts (reads the whole warehouse).")
