"""The main → ClickHouse lag in event time, as recorded on the facts."""

from __future__ import annotations

from evcharging.warehouse.freshness import WarehouseLag


def test_lag_is_main_newest_minus_warehouse_newest():
    lag = WarehouseLag(newest_on_main_us=1_767_600_090_000_000, newest_in_warehouse_us=1_767_600_000_000_000)
    assert lag.seconds == 90.0
    meta = lag.metadata()
    assert meta["main_to_clickhouse_lag_seconds"] == 90.0
    assert meta["newest_event_on_main"] == "2026-01-05T08:01:30+00:00"


def test_an_empty_warehouse_or_lake_has_no_lag_to_report():
    assert WarehouseLag(None, None).seconds == 0.0
    assert WarehouseLag(None, None).metadata()["newest_event_in_clickhouse"] == "none"
