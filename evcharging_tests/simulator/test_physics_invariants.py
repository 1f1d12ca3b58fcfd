"""The issue's acceptance run keeps the physics: a 24 h day of 2,000 vehicles, over the synthetic
stations and over the Kaggle stations, has no AC session above the AC limits, no DC session on an
AC connector (nor AC on a DC one), energy equal to the integral of power, and power never above the
minimum of the charger, connector and vehicle limits. The checks catch a doctored event."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from simulator.sites import SITE_TYPES

from .invariants import connector_violations, energy_violations, power_violations


@pytest.fixture(params=["synthetic_fleet_day", "kaggle_fleet_day"])
def fleet_day(request):
    return request.getfixturevalue(request.param)


def test_the_day_charges_at_every_site_type(fleet_day):
    site_of = dict(zip((s.station_id for s in fleet_day.world.stations), fleet_day.world.site_types, strict=True))
    sites = Counter(site_of[events[0]["station_id"]] for events in fleet_day.sessions.values())
    assert len(fleet_day.sessions) > 500
    assert set(sites) == set(SITE_TYPES) and min(sites.values()) > 50


def test_power_never_exceeds_charger_connector_or_vehicle(fleet_day):
    assert power_violations(fleet_day.events, fleet_day.stations, fleet_day.specs) == []


def test_no_session_on_a_connector_that_cannot_carry_its_current(fleet_day):
    assert connector_violations(fleet_day.sessions, fleet_day.stations, fleet_day.specs) == []


def test_ac_power_is_held_to_the_on_board_charger(fleet_day):
    """AC chargers of 22 kW and more exist in both station sets, yet no AC session draws more than
    its vehicle's on-board charger, and the DC sessions are the only ones above the largest of them."""
    stations, specs = fleet_day.stations, fleet_day.specs
    ac = [e for e in fleet_day.events if not stations[e["station_id"]].is_dc]
    assert any(stations[e["station_id"]].power_kw >= 22 for e in ac)
    assert all(e["power_kw"] <= specs[e["vehicle_id"]].ac_max_kw for e in ac)
    largest_on_board = max(spec.ac_max_kw for spec in specs.values())
    assert max(e["power_kw"] for e in fleet_day.events) > largest_on_board  # DC does go above it


def test_energy_is_the_integral_of_power(fleet_day):
    assert energy_violations(fleet_day.sessions) == []


def test_the_checks_catch_a_broken_event(simulated_day):
    day = simulated_day
    stations, specs = day.stations, day.specs
    dc_session = next(events for events in day.sessions.values() if stations[events[0]["station_id"]].is_dc)
    ac_event = next(e for e in day.events if not stations[e["station_id"]].is_dc)

    too_strong = [{**ac_event, "power_kw": 50.0}]
    assert len(power_violations(too_strong, stations, specs)) == 2  # over its limits and over any AC

    station_id = dc_session[0]["station_id"]
    with_type_2 = {**stations, station_id: dataclasses.replace(stations[station_id], connector_types=("Type 2",))}
    dc_on_type_2 = {"s": [{**e, "connector_type": "Type 2"} for e in dc_session]}
    assert connector_violations(dc_on_type_2, with_type_2, specs) == [f"s: DC session on AC connector Type 2"]

    jumped = [dict(e) for e in dc_session]
    jumped[-1]["energy_kwh"] += 1.0
    assert energy_violations({"s": jumped}) != []
