"""The sessions sensor spaces Spark passes while events keep arriving and catches up once they
settle (an ephemeral Dagster instance; the sensor reads only Dagster's own records)."""

from __future__ import annotations

import time

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.utils import make_new_run_id

from evcharging.defs.lake import sensors
from evcharging.defs.warehouse.assets import FACT_EVENTS, FACT_SESSIONS


def _loaded(instance, key, commit: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(key, tags={"dagster/data_version": commit}))


def _tick(instance) -> dg.SensorResult:
    return sensors.sessions_behind_events(dg.build_sensor_context(instance=instance))


def test_sessions_passes_are_spaced_while_events_arrive_and_catch_up_once_they_settle(monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    assert not _tick(instance).run_requests  # nothing loaded yet

    _loaded(instance, FACT_EVENTS, "c1")
    [first] = _tick(instance).run_requests  # no pass so far: at once
    assert first.tags["lakefs/commit"] == "c1"

    # That pass ran (c1's sessions are in); events keep arriving: the next pass waits.
    instance.add_run(DagsterRun(job_name="refresh_sessions", run_id=make_new_run_id(), status=dg.DagsterRunStatus.SUCCESS))
    _loaded(instance, FACT_SESSIONS, "c1")
    _loaded(instance, FACT_EVENTS, "c2")
    held = _tick(instance)
    assert not held.run_requests and "still arriving" in held.skip_reason.skip_message

    # The events settled (no load for a minute): the sessions catch up.
    start = time.time()
    monkeypatch.setattr(sensors, "_now", lambda: start + sensors.SETTLED_AFTER_S + 1)
    assert [r.tags["lakefs/commit"] for r in _tick(instance).run_requests] == ["c2"]

    # Or, while loads go on, once SESSIONS_EVERY_S passed since the last pass.
    monkeypatch.setattr(sensors, "SETTLED_AFTER_S", 10_000)  # the last load is always recent
    monkeypatch.setattr(sensors, "_now", lambda: start + sensors.SESSIONS_EVERY_S - 5)
    assert not _tick(instance).run_requests
    monkeypatch.setattr(sensors, "_now", lambda: start + sensors.SESSIONS_EVERY_S + 1)
    assert [r.tags["lakefs/commit"] for r in _tick(instance).run_requests] == ["c2"]
