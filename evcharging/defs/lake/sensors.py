"""Sensors on lakeFS commits: the cursor is the truth — nothing seen twice, nothing missed — and the
run queue stays bounded however fast commits arrive.

``ingest_commits`` turns every batch the stream finished (its ``ingested-…`` tag) into a partition
at once, and the batches still pending into one publish run over their range — only while no
publish run is in flight, so the next run takes every batch pending when the last one ended. A
publish run also loads main's head into the warehouse after its merges. ``main_commits`` covers
the rest: it asks for a refresh of ``lake_main`` and the warehouse when main's head is not loaded
and no publish run is in flight, unless a refresh is already waiting to start: that one reads
main's head when it starts, so it loads these commits too. Work of a run that was killed is asked
for again: nothing is lost to an interrupted run.
``sessions_behind_events`` runs Spark's sessions and the marts whenever the sessions fact is behind
the events fact, in a lane of its own; ``reconcile_after_refresh`` reconciles once they caught up.
Cursors live in Dagster's storage, so they survive a restart.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from evcharging.defs.lake import jobs
from evcharging.defs.lake.partitions import ingest_batches
from evcharging.defs.warehouse.assets import FACT_EVENTS, FACT_SESSIONS
from evcharging.lake.ingest import branch_for_tag, unseen_ingest_tags
from evcharging.lake.pending import pending_batches
from evcharging.resources.lakefs import LakeFSResource
from evcharging.settings import load_settings

# A run that exists but has not started its steps yet: it will see whatever is there when it does.
WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]
RUNNING = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
MAX_BATCHES_PER_RUN = 100  # bounds one publish run's length after a backlog (e.g. a long outage)
RETRY_AFTER_S = 60  # a refresh that failed is tried again after this long, not at every tick


def runs_in(instance: dg.DagsterInstance, job_name: str, statuses: list[dg.DagsterRunStatus]) -> int:
    return instance.get_runs_count(dg.RunsFilter(job_name=job_name, statuses=statuses))


@dataclass(frozen=True)
class PublishCursor:
    """``seen``: the last tag added as a partition; ``requested``: the last batch (branch) put in a run
    (for the record: pending batches are derived from lakeFS, not from the cursor)."""

    seen: str | None = None
    requested: str | None = None

    @classmethod
    def parse(cls, raw: str | None) -> PublishCursor:
        if not raw:
            return cls()
        if not raw.startswith("{"):  # the cursor before coalescing: the last tag seen
            return cls(seen=raw)
        return cls(**json.loads(raw))

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def publish_request(keys: list[str]) -> dg.RunRequest:
    """One run for ``keys`` (consecutive partitions): a single partition, or the range of them."""
    if len(keys) == 1:
        return dg.RunRequest(partition_key=keys[0])
    return dg.RunRequest(tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})


# Every 2 s: the next publish run is asked for within ~2 s of the previous one's end.
@dg.sensor(job=jobs.publish_ingest_batches, minimum_interval_seconds=2, default_status=dg.DefaultSensorStatus.RUNNING)
def ingest_commits(context: dg.SensorEvaluationContext, lakefs: LakeFSResource) -> dg.SensorResult:
    """A partition for every ingest batch committed since the last tick, and — unless a publish run
    is in flight — one run for the batches still pending (see :mod:`evcharging.lake.pending`).

    One run at a time, asked for when the previous one ended, takes every batch pending by then: a
    run asked for earlier, to wait in the queue, would fix its range before the batches that arrive
    meanwhile. Batches of a run that died or failed are pending again, so the next run tries them.
    """
    cursor = PublishCursor.parse(context.cursor)
    stream = load_settings().stream_name
    new = unseen_ingest_tags(lakefs, stream, after=cursor.seen)
    seen = new[-1] if new else cursor.seen
    add = [ingest_batches.build_add_request([branch_for_tag(t) for t in new])] if new else []
    if runs_in(context.instance, jobs.publish_ingest_batches.name, WAITING + RUNNING):
        return dg.SensorResult(dynamic_partitions_requests=add, cursor=PublishCursor(seen, cursor.requested).dump(),
                               skip_reason="the publish run in flight comes first; the next takes what is pending then")
    pending = pending_batches(lakefs, stream, tagged_through=seen)  # known partitions
    if not pending:
        return dg.SensorResult(dynamic_partitions_requests=add, cursor=PublishCursor(seen, cursor.requested).dump(),
                               skip_reason="no ingest batch waits to be published")
    batch = pending[:MAX_BATCHES_PER_RUN]
    return dg.SensorResult(dynamic_partitions_requests=add, run_requests=[publish_request(batch)],
                           cursor=PublishCursor(seen, batch[-1]).dump())


def data_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    """The lakeFS commit an asset's latest materialization holds (its data version)."""
    event = instance.get_latest_materialization_event(key)
    return event.asset_materialization.tags.get("dagster/data_version") if event and event.asset_materialization else None


def _newest_run(instance: dg.DagsterInstance, job_name: str) -> dg.RunRecord | None:
    [last] = instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=1) or [None]
    return last


def _failed_recently(last: dg.RunRecord | None) -> float | None:
    """Seconds to wait before trying again, if the job's newest run (``last``) failed less than RETRY_AFTER_S ago."""
    if not last or last.dagster_run.status != dg.DagsterRunStatus.FAILURE:  # a canceled one is tried again at once
        return None
    ended = last.end_time or last.update_timestamp.timestamp()
    wait = RETRY_AFTER_S - (time.time() - ended)
    return wait if wait > 0 else None


@dg.sensor(job=jobs.refresh_lake_main, minimum_interval_seconds=5, default_status=dg.DefaultSensorStatus.RUNNING)
def main_commits(context: dg.SensorEvaluationContext, lakefs: LakeFSResource) -> dg.SensorResult:
    """A refresh of lake_main and the warehouse when main's head moved and no publish run is in
    flight (a publish run loads main's head after its merges), unless a refresh is waiting to start
    (it reads main's head when it starts). A head that no run loaded (a publish or refresh killed or
    failed, a merge made by hand) is asked for again — after RETRY_AFTER_S when a refresh failed."""
    head = lakefs.repo().branch(lakefs.default_branch).get_commit().id
    instance, job = context.instance, jobs.refresh_lake_main.name
    if runs_in(instance, job, WAITING):
        return dg.SensorResult(skip_reason=f"the refresh already queued will load main up to {head[:12]}", cursor=head)
    # A publish run loads main's head after its merges: while one waits or runs, it loads these commits.
    if runs_in(instance, jobs.publish_ingest_batches.name, WAITING + RUNNING):
        return dg.SensorResult(skip_reason=f"the publish run in flight loads main up to {head[:12]} after its merges",
                               cursor=head)
    if data_version(instance, FACT_EVENTS) == head:
        return dg.SensorResult(skip_reason=f"the warehouse holds main's head {head[:12]}", cursor=head)
    if head == context.cursor:
        if runs_in(instance, job, RUNNING):
            return dg.SensorResult(skip_reason=f"main still at {head[:12]}", cursor=head)
        wait = _failed_recently(_newest_run(instance, job))
        if wait:
            return dg.SensorResult(skip_reason=f"the last refresh failed: trying again in {wait:.0f} s", cursor=head)
    return dg.SensorResult(run_requests=[dg.RunRequest(tags={"lakefs/commit": head})], cursor=head)


# A sessions pass starts a JVM (~15 s of CPU on 2 cores) and re-reads every session a load touched.
# While events keep arriving, one pass every SESSIONS_EVERY_S (each over every load since the last)
# leaves the cores to the stream, the audit and the event loads; once the events settle (no load
# for SETTLED_AFTER_S), the sessions catch up at the next tick.
SESSIONS_EVERY_S = 180
SETTLED_AFTER_S = 60


_now = time.time  # the sessions sensor's clock (a test moves it)


def _seconds_since(timestamp: float | None) -> float:
    return _now() - timestamp if timestamp else float("inf")


@dg.sensor(job=jobs.refresh_sessions, minimum_interval_seconds=20, default_status=dg.DefaultSensorStatus.RUNNING)
def sessions_behind_events(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """A sessions refresh while the sessions fact is behind the events fact (their data versions are
    the lakeFS commits they hold), unless one is waiting or running: it covers every load so far.
    While events keep arriving, at most one every SESSIONS_EVERY_S."""
    instance, job = context.instance, jobs.refresh_sessions.name
    events_at = data_version(instance, FACT_EVENTS)
    if not events_at or events_at == data_version(instance, FACT_SESSIONS):
        return dg.SensorResult(skip_reason="the sessions are up to date with the events")
    if runs_in(instance, job, WAITING + RUNNING):
        return dg.SensorResult(skip_reason="a sessions refresh is queued or running")
    last = _newest_run(instance, job)
    wait = _failed_recently(last)
    if wait:
        return dg.SensorResult(skip_reason=f"the last sessions refresh failed: trying again in {wait:.0f} s")
    since_pass = _seconds_since(last.create_timestamp.timestamp() if last else None)
    loaded = instance.get_latest_materialization_event(FACT_EVENTS)
    if since_pass < SESSIONS_EVERY_S and _seconds_since(loaded.timestamp if loaded else None) < SETTLED_AFTER_S:
        return dg.SensorResult(skip_reason=f"events are still arriving: the next sessions pass in "
                                           f"{SESSIONS_EVERY_S - since_pass:.0f} s, or once they settle")
    return dg.SensorResult(run_requests=[dg.RunRequest(tags={"lakefs/commit": events_at})])


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[jobs.refresh_sessions],
                      request_job=jobs.reconcile_warehouse, minimum_interval_seconds=15,
                      default_status=dg.DefaultSensorStatus.RUNNING)
def reconcile_after_refresh(context: dg.RunStatusSensorContext):
    """Reconcile after the sessions caught up, unless a reconciliation is already waiting to start."""
    if runs_in(context.instance, jobs.reconcile_warehouse.name, WAITING):
        return dg.SkipReason("a reconciliation is already queued")
    return dg.RunRequest()
