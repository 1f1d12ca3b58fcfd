"""Under `evcharging dev` (the real daemon, run queue and run launcher): publishing goes on while the
warehouse is held, the events lane (publish and refresh, the fact's writers) never runs two runs at
once, and Ctrl-C stops the UI, the daemon and the run in flight within 20 s, leaving no process
behind and the interrupted run ended (failed or canceled, never "in progress"). The warehouse is
held the way a user's query would hold it: another process keeps chDB's directory lock, so each
load gives way after its bound and is asked for again. Everything is isolated: a scratch lakeFS
repository, stream name, MongoDB database and data directory (Dagster instance, chDB).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request

import dagster as dg
import pytest

from evcharging.resources.from_settings import drop_repository, scratch_repository
from evcharging.streaming.batches import branch_name
from evcharging_tests.factories import session_events
from evcharging_tests.integration.dev import start_dev
from evcharging_tests.integration.test_wap import reference, write_batch  # noqa: F401 — the fixture

pytestmark = pytest.mark.integration

PORT = 3393
HOLD_CHDB = "import sys; from chdb import session; s = session.Session(sys.argv[1]); print('held', flush=True); sys.stdin.read()"


def _wait(condition, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
                alive.add(pid)
        except OSError:
            pass
    return alive


def _ui_answers() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/server_info", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _runs(home, job: str, statuses) -> list:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return instance.get_runs(dg.RunsFilter(job_name=job, statuses=statuses))


EVENTS_LANE = ("publish_ingest_batches", "refresh_lake_main")


def test_publishing_goes_on_while_the_warehouse_is_held_and_ctrl_c_stops_it_all(stack_settings, spark, reference,  # noqa: F811
                                                                               tmp_path, unique_name):
    mongo, stations, models = reference
    lakefs = scratch_repository(stack_settings, f"dev-{unique_name}")
    stream, data_dir = f"d{unique_name}", tmp_path / "data"
    env = {**os.environ, "EVCHARGING_DATA_DIR": str(data_dir), "EVCHARGING_LAKEFS_REPOSITORY": lakefs.repository,
           "EVCHARGING_STREAM_NAME": stream, "EVCHARGING_MONGO_DATABASE": mongo.database,
           "EVCHARGING_DAGSTER_URL": f"http://127.0.0.1:{PORT}"}
    (data_dir / "chdb").mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CHDB, str(data_dir / "chdb")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    dev_log = tmp_path / "dev.log"
    dev = start_dev(PORT, env, dev_log)
    home = data_dir / "dagster_home"
    repo = lakefs.repo()
    in_lane: list[int] = []  # runs of the events lane running at once, at every look

    def lane_running() -> list:
        running = [r for job in EVENTS_LANE for r in _runs(home, job, [dg.DagsterRunStatus.STARTED])]
        in_lane.append(len(running))
        return running

    try:
        # `evcharging dev` creates the instance's storage first; opening it from here at the same
        # moment would stamp its schema twice (alembic then finds two heads and refuses it).
        _wait(lambda: _ui_answers() or dev.poll() is not None, "the Dagster UI of `evcharging dev` to answer")
        assert dev.poll() is None, dev_log.read_text(errors="replace")[-3000:]

        def merged(batch_id: int) -> bool:
            lane_running()
            return not list(repo.branches(prefix=branch_name(stream, batch_id)))
        events = lambda s: session_events(f"run-{unique_name}", s, station_id=stations[0], vehicle_model_id=models[0])  # noqa: E731
        write_batch(spark, lakefs, stream, 0, events("s1"))
        _wait(lambda: merged(0), "the first batch to be published")
        # Its load gave way; main_commits asks for main's head again, and that load gives way too.
        _wait(lambda: _runs(home, "refresh_lake_main", None) and lane_running() is not None,
              "a refresh of main's head (its load then gives way to the held warehouse)")
        # Meanwhile a new batch is still audited and merged.
        write_batch(spark, lakefs, stream, 1, events("s2"), first_offset=10)
        _wait(lambda: merged(1), "the second batch to be published while the warehouse is held")
        in_flight = _wait(lane_running, "a run of the events lane in flight")[0]
        assert max(in_lane) == 1, in_lane  # one writer of the fact at a time
        # Ctrl-C: everything `evcharging dev` started is gone within 20 s, the run marked canceled.
        started = _descendants(dev.pid)
        assert len(started) >= 4, started  # dagster dev, webserver, daemon, code server, the run …
        stopping = time.monotonic()
        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=30)
        assert time.monotonic() - stopping <= 20
        assert not _alive(started), _alive(started)
        output = dev_log.read_text(errors="replace")
        assert "dagster dev stopped in" in output, output[-2000:]
        with dg.DagsterInstance.from_config(str(home)) as instance:  # interrupted: never left "in progress"
            assert instance.get_run_by_id(in_flight.run_id).status in (dg.DagsterRunStatus.FAILURE,
                                                                     dg.DagsterRunStatus.CANCELED)
    finally:
        if dev.poll() is None:  # `dagster dev` runs in a process group of its own: kill every descendant
            for pid in _descendants(dev.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            os.killpg(dev.pid, signal.SIGKILL)
        holder.stdin.close()
        holder.wait(30)
        drop_repository(stack_settings, lakefs)
