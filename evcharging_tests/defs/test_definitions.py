"""The definitions, as the code location loads them, match the reviewed snapshot of the graph.

Every asset's key, deps, group, kinds, checks (and whether they block), partitions, automation and
freshness, plus the sensors and jobs, are compared with ``definitions_snapshot.json``: a change to
the graph shows up in review as a change to that file. After an intended change, rewrite it with
``EVCHARGING_UPDATE_SNAPSHOT=1 pytest evcharging_tests/defs/test_definitions.py`` and commit it.
Also proven: loading the definitions reads no settings at import time.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
from pathlib import Path

import dagster as dg
import pytest

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")


def _freshness(policy) -> str | None:
    if policy is None:
        return None
    warn = policy.warn_window.to_timedelta() if policy.warn_window else None
    return f"time window: warn after {warn}, fail after {policy.fail_window.to_timedelta()}"


def snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        checks = {c.name: "blocking" if graph.get_check_spec(c).blocking else "non-blocking"
                  for c in graph.asset_check_keys if c.asset_key == key}
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "checks": checks,
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
            "freshness": _freshness(node.freshness_policy),
        }
    return {"assets": assets,
            "sensors": sorted(s.name for s in defs.sensors or []),
            "jobs": sorted(j.name for j in defs.jobs or [] if not j.name.startswith("__")),
            "resources": sorted(defs.resources or {})}


def test_definitions_match_the_snapshot():
    from evcharging.definitions import defs

    current = snapshot(defs())
    if os.environ.get("EVCHARGING_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, (
        "the definitions changed; if that was intended, run with EVCHARGING_UPDATE_SNAPSHOT=1 and commit "
        f"{SNAPSHOT.name}:\n" + json.dumps(current, indent=2, sort_keys=True))


def test_the_kafka_topic_sits_between_mongodb_and_the_ingest_batches():
    assets = json.loads(SNAPSHOT.read_text())["assets"]
    assert assets["kafka/ev_charging_events"]["deps"] == ["mongodb/stations", "mongodb/vehicles"]
    assert assets["ingest_batch"]["deps"] == ["kafka/ev_charging_events"]
    assert "kafka" in assets["kafka/ev_charging_events"]["kinds"]


def test_no_settings_are_read_when_defs_modules_are_imported(monkeypatch):
    """Settings are read when definitions load or steps run, never at import (a module-level
    ``load_settings()`` would freeze one environment into the code location)."""
    import evcharging.defs
    import evcharging.settings

    def refuse(**_):
        raise AssertionError("load_settings() called at import time")

    for name in [m for m in sys.modules if m.startswith("evcharging.defs.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(evcharging.settings, "load_settings", refuse)
    for module in pkgutil.walk_packages(evcharging.defs.__path__, "evcharging.defs."):
        importlib.import_module(module.name)


@pytest.mark.parametrize("key", ["clickhouse/fact_charging_events", "clickhouse/mart_daily_energy_by_city_operator"])
def test_warehouse_facts_and_marts_have_freshness_policies(key):
    assert json.loads(SNAPSHOT.read_text())["assets"][key]["freshness"]
