"""The sensors keep each lane's run queue bounded on a real lakeFS, and lose nothing.

Publish: new batches become partitions at once and one run over their range; while that run waits
or runs nothing more is asked for, and the next run takes every batch pending when it ended; the
batches of a run that died are asked for again. Refresh: a publish run in flight loads main itself, so it holds
refreshes back; five main commits between two ticks give one refresh; a
waiting refresh holds back a second and the commits arriving meanwhile are left to it; once it
runs, a new commit asks for exactly one more, and that one loads main's head as of its start.
Each test uses a scratch lakeFS repository; runs are recorded in an ephemeral Dagster instance
with the status a daemon would give them (NOT_STARTED stands for any status before STARTED).
"""

from __future__ import annotations

import json

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.utils import make_new_run_id

from evcharging.defs.lake.assets import lake_main
from evcharging.defs.lake.sensors import ingest_commits, main_commits
from evcharging.resources.from_settings import drop_repository, scratch_repository
from evcharging.streaming.batches import branch_name, tag_name

pytestmark = pytest.mark.integration


@pytest.fixture
def lakefs(stack_settings, unique_name):
    lakefs = scratch_repository(stack_settings, f"coalesce-{unique_name}")
    yield lakefs
    drop_repository(stack_settings, lakefs)


def _stream_batch(lakefs, stream: str, batch_id: int) -> None:
    """What the stream leaves for one batch: a branch with a commit, tagged."""
    repo = lakefs.repo()
    branch = repo.branch(branch_name(stream, batch_id)).create(source_reference="main")
    branch.object(f"sensor-test/{batch_id}.txt").upload(data=b"x", mode="wb")
    commit = branch.commit(message="t", metadata={"evcharging.batch_id": str(batch_id)})
    repo.tag(tag_name(stream, batch_id)).create(commit.get_commit().id)


def _main_commit(lakefs, n: int) -> str:
    branch = lakefs.repo().branch("main")
    branch.object(f"main-commits/{n}.txt").upload(data=b"x", mode="wb")
    return branch.commit(message=f"commit {n}").get_commit().id


def _run(instance, job: str, status: dg.DagsterRunStatus) -> DagsterRun:
    return instance.add_run(DagsterRun(job_name=job, run_id=make_new_run_id(), status=status))


def _tick(sensor, instance, lakefs, cursor):
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lakefs": lakefs}))


def _range(request) -> tuple[str, str]:
    key_range = request.partition_key_range
    return (key_range.start, key_range.end) if key_range else (request.partition_key, request.partition_key)


def test_publish_runs_are_coalesced_one_at_a_time_and_a_dead_runs_batches_asked_for_again(lakefs, unique_name, monkeypatch):
    stream = f"c{unique_name}"
    monkeypatch.setenv("EVCHARGING_STREAM_NAME", stream)
    instance = dg.DagsterInstance.ephemeral()
    for i in range(3):
        _stream_batch(lakefs, stream, i)

    first = _tick(ingest_commits, instance, lakefs, None)
    assert first.dynamic_partitions_requests[0].partition_keys == [branch_name(stream, i) for i in range(3)]
    [request] = first.run_requests
    assert _range(request) == (branch_name(stream, 0), branch_name(stream, 2))

    # The run waits in the queue, then runs: new batches become partitions, but no second run is
    # asked for while it is in flight.
    queued = _run(instance, "publish_ingest_batches", dg.DagsterRunStatus.NOT_STARTED)
    _stream_batch(lakefs, stream, 3)
    second = _tick(ingest_commits, instance, lakefs, first.cursor)
    assert second.run_requests == [] and second.dynamic_partitions_requests[0].partition_keys == [branch_name(stream, 3)]
    instance.delete_run(queued.run_id)
    running = _run(instance, "publish_ingest_batches", dg.DagsterRunStatus.STARTED)
    _stream_batch(lakefs, stream, 4)
    third = _tick(ingest_commits, instance, lakefs, second.cursor)
    assert third.run_requests == [] and third.dynamic_partitions_requests[0].partition_keys == [branch_name(stream, 4)]

    # It merged its three batches and ended: the next run takes every batch pending by then.
    repo = lakefs.repo()
    for i in range(3):
        repo.branch(branch_name(stream, i)).delete()
    instance.delete_run(running.run_id)
    done = _run(instance, "publish_ingest_batches", dg.DagsterRunStatus.SUCCESS)
    fourth = _tick(ingest_commits, instance, lakefs, third.cursor)
    assert [_range(r) for r in fourth.run_requests] == [(branch_name(stream, 3), branch_name(stream, 4))]
    assert json.loads(fourth.cursor)["requested"] == branch_name(stream, 4)

    # That run died (killed with `dagster dev`) before merging anything: both are asked for again.
    instance.delete_run(done.run_id)
    _run(instance, "publish_ingest_batches", dg.DagsterRunStatus.CANCELED)
    for i in range(5, 7):
        _stream_batch(lakefs, stream, i)
    fifth = _tick(ingest_commits, instance, lakefs, fourth.cursor)
    assert [_range(r) for r in fifth.run_requests] == [(branch_name(stream, 3), branch_name(stream, 6))]

    # A merged batch (its branch deleted) and a blocked one (an audit commit on top) are not pending.
    repo.branch(branch_name(stream, 3)).delete()
    repo.branch(branch_name(stream, 4)).commit(message="audit failed", metadata={"evcharging.audit.status": "failed"},
                                               allow_empty=True)
    sixth = _tick(ingest_commits, instance, lakefs, fifth.cursor)
    assert [_range(r) for r in sixth.run_requests] == [(branch_name(stream, 5), branch_name(stream, 6))]


def test_five_main_commits_between_two_ticks_give_one_refresh(lakefs):
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(main_commits, instance, lakefs, None)
    assert len(first.run_requests) == 1
    _run(instance, "refresh_lake_main", dg.DagsterRunStatus.SUCCESS)
    instance.report_runless_asset_event(dg.AssetMaterialization(  # the warehouse loaded that head
        ["clickhouse", "fact_charging_events"], tags={"dagster/data_version": first.cursor}))
    assert _tick(main_commits, instance, lakefs, first.cursor).run_requests == []

    heads = [_main_commit(lakefs, n) for n in range(5)]
    result = _tick(main_commits, instance, lakefs, first.cursor)
    assert len(result.run_requests) == 1 and result.cursor == heads[-1]


def test_a_waiting_refresh_holds_back_a_second_and_the_next_one_loads_the_newer_commits(lakefs):
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(main_commits, instance, lakefs, None)
    [request] = first.run_requests
    waiting = _run(instance, "refresh_lake_main", dg.DagsterRunStatus.NOT_STARTED)

    # Commits arrive while it waits: no second refresh; the waiting one reads main's head when it starts.
    _main_commit(lakefs, 1)
    head = _main_commit(lakefs, 2)
    held = _tick(main_commits, instance, lakefs, first.cursor)
    assert held.run_requests == [] and held.cursor == head

    # It started (so it may have read main before the next commit): a new commit asks for one more.
    instance.delete_run(waiting.run_id)
    _run(instance, "refresh_lake_main", dg.DagsterRunStatus.STARTED)
    newest = _main_commit(lakefs, 3)
    after = _tick(main_commits, instance, lakefs, held.cursor)
    assert len(after.run_requests) == 1 and after.cursor == newest

    # That refresh records main's head as of its start: every commit that arrived meanwhile.
    recorded = dg.materialize([lake_main], instance=instance, resources={"lakefs": lakefs})
    assert recorded.asset_materializations_for_node("lake_main")[0].metadata["lakefs_commit"].value == newest


def test_a_refresh_that_died_is_asked_for_again(lakefs):
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(main_commits, instance, lakefs, None)
    assert len(first.run_requests) == 1
    _run(instance, "refresh_lake_main", dg.DagsterRunStatus.CANCELED)  # killed before loading main's head
    again = _tick(main_commits, instance, lakefs, first.cursor)
    assert len(again.run_requests) == 1 and again.cursor == first.cursor


def test_a_publish_run_in_flight_loads_main_so_no_refresh_unless_it_ended_without_loading(lakefs):
    instance = dg.DagsterInstance.ephemeral()
    publishing = _run(instance, "publish_ingest_batches", dg.DagsterRunStatus.STARTED)
    head = _main_commit(lakefs, 1)  # its merge
    held = _tick(main_commits, instance, lakefs, None)
    assert held.run_requests == [] and held.cursor == head

    # It loaded main's head after its merges: nothing to do once it ended.
    instance.delete_run(publishing.run_id)
    _run(instance, "publish_ingest_batches", dg.DagsterRunStatus.SUCCESS)
    instance.report_runless_asset_event(dg.AssetMaterialization(
        ["clickhouse", "fact_charging_events"], tags={"dagster/data_version": head}))
    assert _tick(main_commits, instance, lakefs, held.cursor).run_requests == []

    # The next one merged and failed before its load (e.g. a blocked batch later in its range): a refresh.
    _run(instance, "publish_ingest_batches", dg.DagsterRunStatus.FAILURE)
    newer = _main_commit(lakefs, 2)
    after = _tick(main_commits, instance, lakefs, head)
    assert len(after.run_requests) == 1 and after.cursor == newer
