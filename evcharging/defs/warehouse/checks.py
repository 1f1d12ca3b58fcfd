"""Reconciliation: what each simulator run says it emitted, against the lake and ClickHouse.

The comparison is :func:`evcharging.warehouse.reconcile.reconcile`; this check gathers what is
recorded (the run manifests, ``load_log``, and each load's and sessions pass's counts per run in
``load_counts`` / ``session_counts``) and fails on any difference — severity ERROR for a loss or a
double, WARN when the only differences are events still on their way. It reads neither the events
topic, nor the lake, nor the facts, so its cost follows the number of loads, not the events: it
runs in seconds in its own job (``reconcile_warehouse``, started after each sessions pass).

``full_audit`` is the same comparison against the facts themselves (``FINAL`` counts of every row):
it reads the whole warehouse, so it is a separate job (``audit_warehouse``) that a person runs.
"""


import asyncio

import dagster as dg

from evcharging.defs.warehouse.assets import FACT_EVENTS, FACT_SESSIONS
from evcharging.resources.kafka import KafkaResource
from evcharging.resources.warehouse import WarehouseResource
from evcharging.warehouse.load import last_loaded_commit, load_log, unsessionized_commits
from evcharging.warehouse.reconcile import latest_manifests, reconcile, warehouse_stage
from evcharging.warehouse.reconcile_state import reconcile_since_last
from evcharging.warehouse.schema import ensure_tables


def _reconciliation(context, kafka: KafkaResource, warehouse: WarehouseResource, full: bool) -> dg.AssetCheckResult:
    manifests = asyncio.run(latest_manifests(kafka.bootstrap_servers, kafka.manifests_topic))
    with warehouse.connect() as wh:
        ensure_tables(wh, warehouse.database)
        if full:
            loads = load_log(wh, warehouse.database)
            result = reconcile(manifests, warehouse_stage(wh, warehouse.database), loads, kafka.events_topic,
                               unsessionized_loads=len(unsessionized_commits(wh, warehouse.database)))
        else:
            result = reconcile_since_last(wh, warehouse.database, manifests, kafka.events_topic)
        newest = last_loaded_commit(wh, warehouse.database)
    for difference in result.differences:
        (context.log.warning if difference.in_flight else context.log.error)(str(difference))
    severity = dg.AssetCheckSeverity.WARN if result.only_in_flight else dg.AssetCheckSeverity.ERROR
    summary = (f"{len(manifests)} runs and {result.loads} loads reconciled exactly" if result.passed else
               f"{len(result.differences)} differences: " + "; ".join(map(str, result.differences[:3])))
    return dg.AssetCheckResult(
        passed=result.passed, severity=severity, description=summary,
        metadata={"runs": dg.MetadataValue.md(result.markdown()), "runs_checked": len(manifests),
                  "loads_checked": result.loads, "differences": len(result.differences),
                  "last_loaded_commit": newest or "none (nothing loaded yet)",
                  "runs_without_manifest": ", ".join(result.runs_without_manifest) or "none"})


@dg.asset_check(asset=FACT_EVENTS, additional_deps=[FACT_SESSIONS], pool="warehouse", blocking=False)
def reconciliation(context: dg.AssetCheckExecutionContext, kafka: KafkaResource,
                   warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Per run with a manifest: events per type (rows and distinct ids) and completed sessions, as the
    loads and sessions passes recorded them, agree with the manifest; per load: every Kafka record
    its batches consumed is accounted for and every event they published was loaded; no Kafka offset
    published twice. From recorded counts only (the facts are not read), and from where the last
    reconciliation stopped: the loads since then and the runs they touched or not exact yet."""
    return _reconciliation(context, kafka, warehouse, full=False)


@dg.asset_check(asset=FACT_EVENTS, additional_deps=[FACT_SESSIONS], pool="warehouse", blocking=False)
def full_audit(context: dg.AssetCheckExecutionContext, kafka: KafkaResource,
               warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """The reconciliation against the facts themselves: every row counted as readers see it (FINAL).
    It reads the whole warehouse: run it by hand (job ``audit_warehouse``), e.g. after an incident."""
    return _reconciliation(context, kafka, warehouse, full=True)
