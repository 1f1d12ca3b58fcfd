"""Sensors on lakeFS commits: the cursor is the truth — nothing seen twice, nothing missed — and the
run queue stays bounded however fast commits arrive.

``ingest_commits`` turns every batch the stream finished (its ``ingested-…`` tag) into a partition
at once, and the batches not yet in any run into one publish run over their range — only while no
publish run is waiting to start, so at most one runs and one waits. ``main_commits`` asks for a
refresh of ``lake_main`` and the warehouse when main's head moves, unless a refresh is already
waiting to start: that one reads main's head when it starts, so it loads these commits too.
``reconcile_after_refresh`` reconciles once a refresh has succeeded, off the refresh's own path.
Cursors live in Dagster's storage, so they survive a restart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from evcharging.defs.lake import jobs
from evcharging.defs.lake.partitions import ingest_batches
from evcharging.lake.ingest import branch_for_tag, unseen_ingest_tags
from evcharging.resources.lakefs import LakeFSResource
from evcharging.settings import load_settings

# A run that exists but has not started its steps yet: it will see whatever is there when it does.
WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]
MAX_BATCHES_PER_RUN = 100  # bounds one publish run's length after a backlog (e.g. a long outage)


def waiting_runs(instance: dg.DagsterInstance, job_name: str) -> int:
    return instance.get_runs_count(dg.RunsFilter(job_name=job_name, statuses=WAITING))


@dataclass(frozen=True)
class PublishCursor:
    """``seen``: the last tag added as a partition; ``requested``: the last tag put in a run."""

    seen: str | None = None
    requested: str | None = None

    @classmethod
    def parse(cls, raw: str | None) -> PublishCursor:
        if not raw:
            return cls()
        if not raw.startswith("{"):  # the cursor before coalescing: the last tag, seen and requested
            return cls(raw, raw)
        return cls(**json.loads(raw))

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def publish_request(keys: list[str]) -> dg.RunRequest:
    """One run for ``keys`` (consecutive partitions): a single partition, or the range of them."""
    if len(keys) == 1:
        return dg.RunRequest(run_key=keys[0], partition_key=keys[0])
    return dg.RunRequest(run_key=f"{keys[0]}..{keys[-1]}", tags={
        ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})


@dg.sensor(job=jobs.publish_ingest_batches, minimum_interval_seconds=5, default_status=dg.DefaultSensorStatus.RUNNING)
def ingest_commits(context: dg.SensorEvaluationContext, lakefs: LakeFSResource) -> dg.SensorResult:
    """A partition for every ingest batch committed since the last tick; one run for the batches that
    are in no run yet, unless a publish run is still waiting to start."""
    cursor = PublishCursor.parse(context.cursor)
    unrequested = unseen_ingest_tags(lakefs, load_settings().stream_name, after=cursor.requested)
    new = [t for t in unrequested if cursor.seen is None or t > cursor.seen]
    seen = new[-1] if new else cursor.seen
    add = [ingest_batches.build_add_request([branch_for_tag(t) for t in new])] if new else []
    if not unrequested:
        return dg.SensorResult(skip_reason="no new ingest commits", cursor=cursor.dump())
    if waiting_runs(context.instance, jobs.publish_ingest_batches.name):
        return dg.SensorResult(dynamic_partitions_requests=add, cursor=PublishCursor(seen, cursor.requested).dump(),
                               skip_reason=f"{len(unrequested)} batches wait for the publish run already queued")
    batch = unrequested[:MAX_BATCHES_PER_RUN]
    return dg.SensorResult(dynamic_partitions_requests=add, run_requests=[publish_request([branch_for_tag(t) for t in batch])],
                           cursor=PublishCursor(seen, batch[-1]).dump())


@dg.sensor(job=jobs.refresh_lake_main, minimum_interval_seconds=5, default_status=dg.DefaultSensorStatus.RUNNING)
def main_commits(context: dg.SensorEvaluationContext, lakefs: LakeFSResource) -> dg.SensorResult:
    """A refresh of lake_main and the warehouse when main's head moved, unless one is waiting to start."""
    head = lakefs.repo().branch(lakefs.default_branch).get_commit().id
    if head == context.cursor:
        return dg.SensorResult(skip_reason=f"main still at {head[:12]}", cursor=head)
    if waiting_runs(context.instance, jobs.refresh_lake_main.name):
        return dg.SensorResult(skip_reason=f"the refresh already queued will load main up to {head[:12]}", cursor=head)
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=head, tags={"lakefs/commit": head})], cursor=head)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[jobs.refresh_lake_main],
                      request_job=jobs.reconcile_warehouse, minimum_interval_seconds=15,
                      default_status=dg.DefaultSensorStatus.RUNNING)
def reconcile_after_refresh(context: dg.RunStatusSensorContext):
    """Reconcile after a successful refresh, unless a reconciliation is already waiting to start."""
    if waiting_runs(context.instance, jobs.reconcile_warehouse.name):
        return dg.SkipReason("a reconciliation is already queued")
    return dg.RunRequest(run_key=context.dagster_run.run_id)
