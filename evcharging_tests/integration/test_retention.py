"""Retention keeps pending batches exact, on the real lakeFS: published batches lose their tag and
their Dagster partition past the window (the newest few tags stay for the stream's replay), while a
batch still waiting keeps both and is still the one the publish sensor asks for."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pytest

from evcharging.defs.lake.partitions import ingest_batches
from evcharging.defs.lake.sensors import PublishCursor, ingest_commits
from evcharging.defs.retention.jobs import prune_partitions
from evcharging.lake import ingest
from evcharging.lake.pending import ingest_branches, pending_batches
from evcharging.lake.retention import prune_published_tags
from evcharging.resources.from_settings import drop_repository, scratch_repository
from evcharging.settings import load_settings
from evcharging.streaming.batches import branch_name, tag_name
from evcharging_tests.factories import session_events
from evcharging_tests.integration.test_wap import write_batch

pytestmark = pytest.mark.integration


@pytest.fixture
def lake(stack_settings):
    lakefs = scratch_repository(stack_settings, f"retention-{datetime.now():%H%M%S%f}")
    yield lakefs
    drop_repository(stack_settings, lakefs)


def test_pruning_keeps_pending_batches_exact(spark, lake):
    stream = load_settings().stream_name
    for batch in range(5):
        write_batch(spark, lake, stream, batch, session_events("rt", f"rt-{batch}", n=3), first_offset=3 * batch)
    for batch in range(4):  # published: merged into main, branch deleted (what the audit's publish does)
        ingest.publish(lake, ingest.ingest_commit(lake, branch_name(stream, batch)), {})
    newest_tag = tag_name(stream, 4)
    assert pending_batches(lake, stream, tagged_through=newest_tag) == [branch_name(stream, 4)]

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ingest_batches.name, [branch_name(stream, b) for b in range(5)])
    # A window of 0 s: every published batch is old enough; the newest published one stays (keep 1).
    pruning = prune_published_tags(lake, stream, older_than_s=0, keep_newest=1)
    assert pruning.pruned == [tag_name(stream, b) for b in range(3)]
    assert pruning.oldest_kept == tag_name(stream, 3)
    assert prune_partitions(instance, pruning.pruned, pruning.oldest_kept) == 3
    assert instance.get_dynamic_partitions(ingest_batches.name) == [branch_name(stream, 3), branch_name(stream, 4)]
    assert [t.id for t in lake.repo().tags(prefix=f"ingested-{stream}-")] == [tag_name(stream, 3), newest_tag]

    # What is pending has not changed, and the sensor asks for exactly that batch.
    assert pending_batches(lake, stream, tagged_through=newest_tag) == [branch_name(stream, 4)]
    assert list(ingest_branches(lake, stream)) == [branch_name(stream, 4)]
    context = dg.build_sensor_context(instance=instance, cursor=PublishCursor(seen=newest_tag).dump(),
                                      resources={"lakefs": lake})
    [request] = ingest_commits(context).run_requests
    assert request.partition_key == branch_name(stream, 4)
    # A second pass has nothing left to prune (the batch waiting keeps its tag).
    again = prune_published_tags(lake, stream, older_than_s=0, keep_newest=1)
    assert again.pruned == [] and again.oldest_kept == tag_name(stream, 3)


def test_the_prune_history_job_runs_as_defined(stack_settings):
    """The hourly job as the code location defines it, on the stack's repository: it succeeds and
    records what it pruned (nothing is old enough on a fresh stack) as an observation of lake_main."""
    from evcharging.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    result = defs().get_job_def("prune_history").execute_in_process(instance=instance)
    assert result.success
    [observation] = [e.asset_observation_data.asset_observation for e in result.all_events
                     if e.event_type_value == "ASSET_OBSERVATION"]
    assert {"tags_pruned", "partitions_pruned", "runs_pruned", "service_logs_rotated"} <= set(observation.metadata)
