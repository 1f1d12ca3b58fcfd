"""A field a newer producer sends reaches the warehouse before and after the contract knows it.

Under the current contract the field is kept in ``rescued_fields``; once a new contract version
adds it, the warehouse gains the column, and the rows loaded before show the values that were
rescued, as do lake files written before the upgrade and loaded after it.
"""

from __future__ import annotations

import json

import pytest

from evcharging import contracts
from evcharging.contracts import FIELDS, EventField
from evcharging.warehouse import schema
from evcharging.warehouse.schema import ensure_tables, qualified
from evcharging_tests.warehouse.conftest import DB
from evcharging_tests.warehouse.events import T0, session_events

pytestmark = pytest.mark.integration

FIRMWARE = EventField("firmware", "string", True, "Charger firmware (a field of the next version).", since=2)


def _rescued(rows: list[dict], firmware: str) -> list[dict]:
    return [{**r, "rescued_fields": json.dumps({"firmware": firmware, "retries": 1})} for r in rows]


def _firmware(wh) -> dict[str, str]:
    """event id → firmware ('' where null)."""
    return dict(wh.query_rows(f"SELECT event_id, ifNull(firmware, '') FROM {qualified(DB, 'fact_charging_events')} FINAL"))


def test_rescued_values_become_the_new_column(lake, warehouse, monkeypatch):
    before = _rescued(session_events("a", 3), "1.2.3") + session_events("plain", 2, start=T0.replace(hour=9))
    old_file = _rescued(session_events("b", 2, start=T0.replace(hour=10)), "2.0.0")
    with warehouse.connect() as wh:
        lake.load(wh, DB, before)
        rescued = wh.query_rows(f"SELECT session_id, rescued_fields FROM {qualified(DB, 'fact_charging_events')} FINAL "
                                "WHERE rescued_fields IS NOT NULL")
        assert sorted(s for s, _ in rescued) == ["a"] * 3
        assert json.loads(rescued[0][1]) == {"firmware": "1.2.3", "retries": 1}

        # The next contract version adds the field (as simulator/events.py documents).
        monkeypatch.setattr(contracts, "FIELDS", (*FIELDS, FIRMWARE))
        monkeypatch.setattr(schema, "FIELDS", (*FIELDS, FIRMWARE))
        ensure_tables(wh, DB)
        by_id = _firmware(wh)
        assert {by_id[r["event_id"]] for r in before[:3]} == {"1.2.3"}
        assert {by_id[r["event_id"]] for r in before[3:]} == {""}

        lake.load(wh, DB, old_file)  # a lake file from before the upgrade, loaded after it
        by_id = _firmware(wh)
    assert {by_id[r["event_id"]] for r in old_file} == {"2.0.0"}
    assert len(by_id) == len(before) + len(old_file)
