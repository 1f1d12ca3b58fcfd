"""Dimensions and marts on chDB: built from reference documents and from sessions loaded out of a
lakeFS test branch, rebuilt identically on a second run, with utilisation and energy that add up
to the sessions'."""

from __future__ import annotations

from datetime import timedelta

import pytest

from evcharging.warehouse.dimensions import rebuild_dim_stations, rebuild_dim_time, rebuild_dim_vehicles
from evcharging.warehouse.marts import MARTS, mart_chart, rebuild_mart
from evcharging.warehouse.schema import qualified
from evcharging.warehouse.tables import row_count
from evcharging_tests.warehouse.conftest import DB
from evcharging_tests.warehouse.events import T0, session_events


def _station(i: int, city: str, charger_type: str, spots: int) -> dict:
    sid = f"EVS0000{i}"
    return {"_id": sid, "station_id": sid, "city": city, "address": f"{i} Road, {city}", "operator": "Op",
            "charger_type": charger_type, "capacity_kw": 50.0, "power_kw": 50.0, "cost_usd_per_kwh": 0.5,
            "parking_spots": spots, "connector_types": ["CCS"], "latitude": 1.0, "longitude": 2.0,
            "location": {"type": "Point", "coordinates": [2.0, 1.0]}, "opening_hours": "24/7", "open_minute": 0,
            "close_minute": 1440, "renewable_energy": True, "rating": 4.5, "installation_year": 2020,
            "operator_extra": "ignored"}


VEHICLE = {"_id": "tesla-model-3", "name": "Tesla Model 3", "battery_kwh": 57.5, "efficiency_wh_per_km": 150.0,
           "dc_max_kw": None, "ac_max_kw": 11.0, "connector_types": ["Type 2"], "price_eur": None, "range_km": 400.0,
           "top_speed_kmh": 200.0, "acceleration_0_100_s": 6.1, "link": "x"}


def _mart_rows(wh, mart):
    return wh.query_rows(f"SELECT * FROM {qualified(DB, mart)} ORDER BY ALL")


def test_dimensions_and_marts(lake, warehouse):
    # Session a spans two hours at station 1 (2 chargers); b is one short session at station 2.
    a = session_events("a", 5, step_s=1200)  # 08:00:00.123 → 09:20:00.123
    b = session_events("b", 3, station_id="EVS00002", start=T0 + timedelta(minutes=10), step_s=60, first_offset=50)
    with warehouse.connect() as wh:
        assert lake.load(wh, DB, a + b).sessions_loaded == 2
        assert rebuild_dim_stations(wh, DB, [_station(1, "Springfield", "DC Fast Charger", 2),
                                             _station(2, "Shelbyville", "AC Level 2", 1)]) == 2
        assert rebuild_dim_vehicles(wh, DB, [VEHICLE]) == 1
        assert rebuild_dim_time(wh, DB) == 3  # from the first arrival (07:59:30) to the last event (09:20)
        hours = [r[0] for r in wh.query_rows(f"SELECT toHour(hour) FROM {qualified(DB, 'dim_time')} ORDER BY hour")]
        first = {}
        for mart in MARTS:
            rebuild_mart(wh, DB, mart)
            first[mart] = _mart_rows(wh, mart)
            rebuild_mart(wh, DB, mart)  # a second materialization leaves the same rows
            assert _mart_rows(wh, mart) == first[mart]
            assert "█" in mart_chart(wh, DB, mart)
        util = wh.query_rows(f"SELECT station_id, toHour(hour), occupied_s, utilisation, energy_kwh FROM "
                             f"{qualified(DB, 'mart_station_hourly_utilisation')} ORDER BY station_id, hour")
        daily = wh.query_rows(f"SELECT city, sessions, energy_kwh, revenue_usd FROM "
                              f"{qualified(DB, 'mart_daily_energy_by_city_operator')} ORDER BY city")
        kpis = dict(wh.query_rows(f"SELECT charger_type, sessions FROM {qualified(DB, 'mart_charger_type_kpis')}"))
        assert row_count(wh, DB, "dim_vehicles") == 1
    assert hours == [7, 8, 9]
    energy_a, energy_b = a[-1]["energy_kwh"], b[-1]["energy_kwh"]
    (s1h8, s1h9, s2h8) = util
    assert s1h8[:2] == ("EVS00001", 8) and s1h8[2] == pytest.approx(3600 - 0.123)
    assert s1h8[3] == pytest.approx(s1h8[2] / (2 * 3600))
    assert s1h8[4] + s1h9[4] == pytest.approx(energy_a)  # the session's energy, spread over its hours
    assert s2h8[4] == pytest.approx(energy_b)
    assert daily == [("Shelbyville", 1, pytest.approx(energy_b), pytest.approx(energy_b * 0.5)),
                     ("Springfield", 1, pytest.approx(energy_a), pytest.approx(energy_a * 0.5))]
    assert kpis == {"DC Fast Charger": 1, "AC Level 2": 1}


def test_a_station_that_leaves_the_source_stays_in_the_dimension_retired(warehouse):
    docs = [_station(1, "Oslo", "DC Fast Charger", 2), _station(2, "Bergen", "AC Level 2", 1)]
    with warehouse.connect() as wh:
        rebuild_dim_stations(wh, DB, docs)
        rebuild_dim_stations(wh, DB, docs[:1])
        rebuild_dim_stations(wh, DB, docs[:1])  # a second rebuild keeps it, still once
        rows = wh.query_rows(f"SELECT station_id, city, retired FROM {qualified(DB, 'dim_stations')} FINAL "
                             "ORDER BY station_id")
        rebuild_dim_stations(wh, DB, docs)  # back in the source: active again
        back = wh.query_rows(f"SELECT station_id, retired FROM {qualified(DB, 'dim_stations')} FINAL ORDER BY station_id")
    assert [(s, c, bool(r)) for s, c, r in rows] == [("EVS00001", "Oslo", False), ("EVS00002", "Bergen", True)]
    assert [(s, bool(r)) for s, r in back] == [("EVS00001", False), ("EVS00002", False)]


def test_charger_type_kpis_count_stations_in_service_and_keep_retired_stations_sessions(warehouse):
    """A station that left the reference data is no capacity any more, but its sessions stay history."""
    from evcharging.warehouse.schema import ensure_tables

    docs = [_station(1, "Oslo", "DC Fast Charger", 2), _station(2, "Bergen", "DC Fast Charger", 4),
            _station(3, "Trondheim", "AC Level 2", 1)]
    sessions = qualified(DB, "fact_charging_sessions")
    with warehouse.connect() as wh:
        ensure_tables(wh, DB)
        for i, (station, hours) in enumerate([("EVS00001", 1), ("EVS00002", 2), ("EVS00003", 1)]):
            wh.command(f"INSERT INTO {sessions} (session_id, run_id, station_id, start_time, end_time, duration_s, "
                       f"energy_kwh) VALUES ('s{i}', 'r', '{station}', '2026-01-05 08:00:00', "
                       f"'2026-01-05 08:00:00' + INTERVAL {hours} HOUR, {hours * 3600}, 10)")
        rebuild_dim_stations(wh, DB, docs)
        rebuild_dim_stations(wh, DB, docs[:1])  # Bergen and Trondheim leave the source: retired
        wh.command(f"INSERT INTO {qualified(DB, 'dim_time')} (hour) VALUES ('2026-01-05 08:00:00'), "
                   "('2026-01-05 09:00:00')")
        rebuild_mart(wh, DB, "mart_charger_type_kpis")
        kpis = {r[0]: r[1:] for r in wh.query_rows(
            f"SELECT charger_type, stations, chargers, sessions, energy_kwh, utilisation "
            f"FROM {qualified(DB, 'mart_charger_type_kpis')} FINAL")}
    # DC: Oslo's 2 chargers over 2 hours, occupied 1 hour (Bergen's 2 hours are not Oslo's capacity).
    assert kpis["DC Fast Charger"] == (1, 2, 2, pytest.approx(20.0), pytest.approx(1 / 4))
    assert kpis["AC Level 2"] == (0, 0, 1, pytest.approx(10.0), 0.0)  # all its stations retired: history only
