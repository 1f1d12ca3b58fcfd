"""Retention: the state every recurring step leaves behind is pruned hourly, so nothing a tick or
a run reads grows with the months the pipeline has run.

* lakeFS tags of published batches, and their ``ingest_batches`` partitions, after
  EVCHARGING_PUBLISHED_BATCH_RETENTION_DAYS (7): the partition count stays near a week of batches
  (8,640 a day at a 10 s trigger), under Dagster's advice of 100,000 per asset. A pruned batch is
  still found from lakeFS: its merge commit on main names its branch, ingest commit and offsets.
* Finished runs with their event logs after EVCHARGING_DAGSTER_RUN_RETENTION_DAYS (3), except a run
  that holds an asset's latest materialization (the sensors and the UI read those).
* Sensor and schedule ticks: by the daemon itself (``retention`` in ``dagster.yaml``).
* The local stack's service logs past EVCHARGING_SERVICE_LOG_MAX_MB (64): each keeps one previous
  file (FerretDB alone writes a few MB a day). Compose leaves logs to Docker's log driver.
"""

import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from evcharging.defs.lake.jobs import LANE, MAX_RUNTIME
from evcharging.defs.lake.partitions import ingest_batches
from evcharging.lake.ingest import branch_for_tag
from evcharging.lake.retention import prune_published_tags
from evcharging.resources.lakefs import LakeFSResource
from evcharging.settings import load_settings
from evcharging.stack.process import rotate_logs

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
RUNS_PER_PASS = 20_000  # a pass deletes at most this many runs (the next takes the rest)


def prune_partitions(instance: dg.DagsterInstance, pruned_tags: list[str], oldest_kept: str | None) -> int:
    """Delete the partitions of the pruned batches, and any older partition whose tag is gone too
    (left by a pass that stopped half-way). Partitions of batches still kept stay."""
    keys = set(instance.get_dynamic_partitions(ingest_batches.name))
    gone = {branch_for_tag(t) for t in pruned_tags}
    if oldest_kept:
        gone |= {k for k in keys if k < branch_for_tag(oldest_kept)}
    for key in sorted(gone & keys):
        instance.delete_dynamic_partition(ingest_batches.name, key)
    return len(gone & keys)


def prune_runs(instance: dg.DagsterInstance, older_than: datetime, asset_keys: list[dg.AssetKey]) -> int:
    """Delete finished runs created before ``older_than``, oldest first, except those holding the
    latest materialization of one of ``asset_keys``."""
    latest = instance.get_latest_materialization_events(asset_keys)
    keep = {event.run_id for event in latest.values() if event}
    records = instance.get_run_records(dg.RunsFilter(statuses=FINISHED, created_before=older_than),
                                       limit=RUNS_PER_PASS, ascending=True)
    deleted = 0
    for record in records:
        if record.dagster_run.run_id not in keep:
            instance.delete_run(record.dagster_run.run_id)
            deleted += 1
    return deleted


@dg.op
def prune_expired_state(context: dg.OpExecutionContext, lakefs: LakeFSResource) -> None:
    """Prune published batches' tags and partitions and old runs; rotate service logs (see the module docstring)."""
    settings = load_settings()
    started = time.monotonic()
    tags = prune_published_tags(lakefs, settings.stream_name, settings.published_batch_retention_days * 86400)
    partitions = prune_partitions(context.instance, tags.pruned, tags.oldest_kept)
    keys = list(context.instance.get_asset_keys())  # every asset with events: their latest runs are kept
    cutoff = datetime.now(UTC) - timedelta(days=settings.dagster_run_retention_days)
    runs = prune_runs(context.instance, cutoff, keys)
    logs = rotate_logs(settings.logs_dir, int(settings.service_log_max_mb * 2**20))
    context.log.info(f"pruned {len(tags.pruned)} lakeFS tags, {partitions} ingest_batch partitions and {runs} runs, "
                     f"rotated {len(logs)} service logs{' (' + ', '.join(logs) + ')' if logs else ''} "
                     f"in {time.monotonic() - started:.1f} s")
    context.log_event(dg.AssetObservation(asset_key="lake_main", metadata={
        "tags_pruned": len(tags.pruned), "partitions_pruned": partitions, "runs_pruned": runs,
        "oldest_tag_kept": tags.oldest_kept or "none", "service_logs_rotated": len(logs)}))


# The bookkeeping lane, shared with reconciliation: both are short and periodic.
@dg.job(name="prune_history", tags={LANE: "bookkeeping", MAX_RUNTIME: "1800"})
def prune_history_job():
    """Retention: prune published batches' lakeFS tags and Dagster partitions and old runs; rotate the
    local stack's service logs."""
    prune_expired_state()

prune_history_hourly = dg.ScheduleDefinition(
    job=prune_history_job, cron_schedule="17 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING)
