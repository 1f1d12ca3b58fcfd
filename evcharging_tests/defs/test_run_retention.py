"""Run retention deletes finished runs past the cutoff, with their events, but never the run that
holds an asset's latest materialization (the sensors and the UI read those)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from evcharging.defs.retention.jobs import prune_runs


@dg.asset
def often() -> None:
    """Materialized in every run."""


@dg.asset
def once() -> None:
    """Materialized in the first run only."""


def test_old_runs_go_but_those_holding_a_latest_materialization_stay():
    instance = dg.DagsterInstance.ephemeral()
    first = dg.materialize([often, once], instance=instance).run_id
    dg.materialize([often], instance=instance)
    last = dg.materialize([often], instance=instance).run_id
    keys = [often.key, once.key]
    deleted = prune_runs(instance, datetime.now(UTC) + timedelta(hours=1), keys)  # every run is "old"
    assert deleted == 1
    assert {r.run_id for r in instance.get_runs()} == {first, last}
    assert instance.get_latest_materialization_event(once.key).run_id == first
