"""Reconciliation: what each simulator run says it emitted, against Kafka, lakeFS and ClickHouse.

The counting and the comparison are plain functions in :mod:`evcharging.warehouse.reconcile`; this
check gathers the four views and fails on any difference — severity ERROR for a loss or a double,
WARN when the only differences are events still on their way (the lake has not reached the run's
Kafka offsets yet).
"""


import dagster as dg

from evcharging.defs.warehouse.assets import FACT_EVENTS, FACT_SESSIONS
from evcharging.resources.kafka import KafkaResource
from evcharging.resources.lakefs import LakeFSResource
from evcharging.resources.spark import SparkResource
from evcharging.resources.warehouse import WarehouseResource
from evcharging.warehouse.load import last_loaded_commit
from evcharging.warehouse.reconcile import (
    caught_up, kafka_stage, lake_stage, latest_manifests, reconcile, warehouse_stage,
)
from evcharging.warehouse.schema import ensure_tables


@dg.asset_check(asset=FACT_EVENTS, additional_deps=[FACT_SESSIONS], pool="warehouse", blocking=False)
def reconciliation(context: dg.AssetCheckExecutionContext, spark: SparkResource, kafka: KafkaResource,
                   lakefs: LakeFSResource, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Per run with a manifest: events per type (rows and distinct ids) and completed sessions agree
    between the manifest, the Kafka events topic, lakeFS (at the commit the warehouse last loaded)
    and the ClickHouse facts."""
    with warehouse.connect() as wh:
        ensure_tables(wh, warehouse.database)
        commit = last_loaded_commit(wh, warehouse.database)
        in_warehouse = warehouse_stage(wh, warehouse.database)
    session = spark.spark_session
    manifests = latest_manifests(session, kafka.bootstrap_servers, kafka.manifests_topic)
    in_kafka, kafka_offsets = kafka_stage(session, kafka.bootstrap_servers, kafka.events_topic)
    in_lake, _, positions = lake_stage(session, lakefs, commit) if commit else ({}, {}, {})
    result = reconcile(manifests, {"kafka": in_kafka, "lake": in_lake, "warehouse": in_warehouse},
                       caught_up(kafka_offsets, positions))
    for difference in result.differences:
        (context.log.warning if difference.in_flight else context.log.error)(str(difference))
    severity = dg.AssetCheckSeverity.WARN if result.only_in_flight else dg.AssetCheckSeverity.ERROR
    summary = (f"{len(manifests)} runs reconciled exactly" if result.passed else
               f"{len(result.differences)} differences: " + "; ".join(map(str, result.differences[:3])))
    return dg.AssetCheckResult(
        passed=result.passed, severity=severity, description=summary,
        metadata={"runs": dg.MetadataValue.md(result.markdown()), "runs_checked": len(manifests),
                  "differences": len(result.differences),
                  "lakefs_commit": commit or "none (nothing loaded yet)",
                  "runs_without_manifest": ", ".join(result.runs_without_manifest) or "none"})
