"""Sensors on lakeFS commits: the cursor is the truth — nothing seen twice, nothing missed.

``ingest_commits`` turns every batch the stream finished (its ``ingested-…`` tag) into a partition
and one run of the publish job. ``main_commits`` refreshes ``lake_main`` and the warehouse whenever
main's head moves. Both cursors live in Dagster's storage, so they survive a restart.
"""

import dagster as dg

from evcharging.defs.lake import jobs
from evcharging.defs.lake.partitions import ingest_batches
from evcharging.lake.ingest import branch_for_tag, unseen_ingest_tags
from evcharging.resources.lakefs import LakeFSResource
from evcharging.settings import load_settings


@dg.sensor(job=jobs.publish_ingest_batches, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def ingest_commits(context: dg.SensorEvaluationContext, lakefs: LakeFSResource) -> dg.SensorResult:
    """A partition and a run for every ingest batch committed since the cursor (the last tag seen)."""
    tags = unseen_ingest_tags(lakefs, load_settings().stream_name, after=context.cursor)
    keys = [branch_for_tag(t) for t in tags]
    if not keys:
        return dg.SensorResult(skip_reason="no new ingest commits", cursor=context.cursor)
    return dg.SensorResult(
        dynamic_partitions_requests=[ingest_batches.build_add_request(keys)],
        run_requests=[dg.RunRequest(partition_key=k, run_key=k) for k in keys],
        cursor=tags[-1])


@dg.sensor(job=jobs.refresh_lake_main, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def main_commits(context: dg.SensorEvaluationContext, lakefs: LakeFSResource) -> dg.SensorResult:
    """One refresh of lake_main and everything downstream per new head commit of main."""
    head = lakefs.repo().branch(lakefs.default_branch).get_commit().id
    if head == context.cursor:
        return dg.SensorResult(skip_reason=f"main still at {head[:12]}", cursor=head)
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=head, tags={"lakefs/commit": head})], cursor=head)
