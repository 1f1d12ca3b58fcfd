"""Charging physics: the closed-form SoC trajectory agrees with an independent numeric integration
of the charging curve, energy is the integral of power, power respects every limit (charger,
connector, on-board charger, vehicle DC limit), a connector only carries the current it can, and
stations open and close when their hours say."""

from __future__ import annotations

import math

import pytest

from simulator.connectors import carries
from simulator.model import (
    TAPER_START_PCT, ChargeTrajectory, Station, VehicleSpec, curve_fraction, dc_max_kw,
    session_power_cap, shared_connector,
)

CAR = VehicleSpec("car", "Car", battery_kwh=60.0, efficiency_wh_per_km=160, ac_max_kw=11.0,
                  dc_max_kw=dc_max_kw(700, 160), connector_types=("Type 2", "CCS"))
AC_ONLY = VehicleSpec("city", "City car", battery_kwh=21.3, efficiency_wh_per_km=164, dc_max_kw=None)


def station(charger_type="DC Fast Charger", power_kw=150.0, connectors=("CCS",), hours=(0, 1440)) -> Station:
    return Station("EVS1", "Berlin", 52.5, 13.4, charger_type, power_kw, connectors, 2, *hours)


def test_dc_limit_is_range_per_hour_times_efficiency():
    assert dc_max_kw(700, 160) == pytest.approx(112.0)
    assert dc_max_kw(None, 160) is None


FAST_AC_CAR = VehicleSpec("zoe", "Zoe", battery_kwh=52.0, efficiency_wh_per_km=165, ac_max_kw=22.0,
                          connector_types=("Type 2", "Type 1", "Tesla"))


@pytest.mark.parametrize("site, vehicle, connector, cap", [
    (station(power_kw=350), CAR, "CCS", 112.0),                            # vehicle DC limit
    (station(power_kw=50), CAR, "CCS", 50.0),                              # charger limit
    (station("AC Level 2", 22.0, ("Type 2",)), CAR, "Type 2", 11.0),       # on-board charger on AC
    (station("AC Level 1", 1.9, ("Type 2",)), CAR, "Type 2", 1.9),
    (station("AC Level 2", 43.0, ("Type 2",)), FAST_AC_CAR, "Type 2", 22.0),
    (station("AC Level 2", 22.0, ("Type 1",)), FAST_AC_CAR, "Type 1", 19.2),  # connector's AC rating
    (station("AC Level 2", 22.0, ("Tesla",)), FAST_AC_CAR, "Tesla", 19.2),
    (station(power_kw=150), AC_ONLY, "CCS", 0.0),                          # no DC at all
    (station(power_kw=150, connectors=("Type 2",)), CAR, "Type 2", 0.0),   # Type 2 carries no DC
    (station("AC Level 2", 22.0, ("CCS",)), CAR, "CCS", 0.0),              # CCS carries no AC
])
def test_power_cap_is_the_lowest_limit(site, vehicle, connector, cap):
    assert session_power_cap(site, vehicle, connector) == pytest.approx(cap)


def test_connectors_must_match_carry_the_current_and_dc_needs_a_dc_vehicle():
    assert shared_connector(station(connectors=("CHAdeMO", "CCS")), CAR) == "CCS"
    assert shared_connector(station(connectors=("CHAdeMO",)), CAR) is None
    assert shared_connector(station(connectors=("Type 2",)), AC_ONLY) is None
    assert shared_connector(station(connectors=("Type 2", "CCS")), CAR) == "CCS"  # Type 2 is AC only
    assert shared_connector(station("AC Level 2", 22.0, ("CCS", "Type 2")), CAR) == "Type 2"
    assert shared_connector(station("AC Level 2", 22.0, ("CCS",)), CAR) is None


@pytest.mark.parametrize("connector, ac, dc", [
    ("Type 1", True, False), ("Type 2", True, False), ("CCS", False, True), ("CHAdeMO", False, True),
    ("GB/T", False, True), ("Tesla", True, True), ("NACS", True, True), ("Schuko", False, False),
])  # fmt: skip
def test_each_connector_carries_its_currents(connector, ac, dc):
    assert (carries(connector, dc=False), carries(connector, dc=True)) == (ac, dc)


def test_curve_is_flat_then_tapers_to_the_floor():
    assert curve_fraction(10) == curve_fraction(TAPER_START_PCT) == 1.0
    assert curve_fraction(90) == pytest.approx(0.55)
    assert curve_fraction(100) == pytest.approx(0.1)


def numeric_soc(cap_kw, battery_kwh, soc0, t_end_s, dt=0.5):
    """Independent RK4 integration of dE/dt = cap * fraction(SoC), SoC = soc0 + 100 E / battery."""
    def power(energy):
        return cap_kw * curve_fraction(soc0 + 100 * energy / battery_kwh)

    energy, t = 0.0, 0.0
    while t < t_end_s - 1e-9:
        step = min(dt, t_end_s - t) / 3600
        k1 = power(energy)
        k2 = power(energy + step * k1 / 2)
        k3 = power(energy + step * k2 / 2)
        k4 = power(energy + step * k3)
        energy += step * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        t += step * 3600
    return soc0 + 100 * energy / battery_kwh, energy


@pytest.mark.parametrize("cap, soc0", [(112.0, 20.0), (11.0, 55.0), (50.0, 85.0), (1.9, 5.0)])
def test_trajectory_matches_numeric_integration_of_power(cap, soc0):
    trajectory = ChargeTrajectory(cap, 60.0, soc0)
    end = trajectory.time_to(99.0)
    for t in (0.0, end * 0.1, end * 0.5, end * 0.9, end):
        soc, energy = numeric_soc(cap, 60.0, soc0, t, dt=max(end / 2000, 0.5))
        assert trajectory.soc_at(t) == pytest.approx(soc, abs=1e-6)
        assert trajectory.energy_at(trajectory.soc_at(t)) == pytest.approx(energy, abs=1e-6)


def test_time_to_inverts_soc_at():
    trajectory = ChargeTrajectory(112.0, 60.0, 20.0)
    for target in (30.0, 80.0, 80.5, 95.0, 100.0):
        assert trajectory.soc_at(trajectory.time_to(target)) == pytest.approx(target)
    assert trajectory.time_to(10.0) == 0.0
    assert math.isinf(ChargeTrajectory(0.0, 60.0, 20.0).time_to(50.0))


def test_power_never_exceeds_the_cap_and_soc_rises():
    trajectory = ChargeTrajectory(112.0, 60.0, 20.0)
    times = [n * 30.0 for n in range(400)]
    socs = [trajectory.soc_at(t) for t in times]
    assert all(b > a for a, b in zip(socs, socs[1:]))
    assert all(0 <= s <= 100 for s in socs[: next(i for i, s in enumerate(socs) if s > 99.9)])
    assert all(trajectory.power_at(s) <= 112.0 for s in socs)


@pytest.mark.parametrize("hours, minute, is_open, closes_minute", [
    ((540, 1080), 539, False, None),
    ((540, 1080), 540, True, 1080),
    ((540, 1080), 1079, True, 1080),
    ((540, 1080), 1080, False, None),
    ((1320, 360), 1400, True, 1440 + 360),  # open over midnight
    ((1320, 360), 100, True, 360),
    ((1320, 360), 700, False, None),
    ((0, 1440), 700, True, math.inf),
])
def test_opening_hours(hours, minute, is_open, closes_minute):
    site = station(hours=hours)
    t = 3 * 86400 + minute * 60  # any day: the clock is UTC midnight-based
    assert site.is_open(t) is is_open
    if is_open:
        assert site.closes_at(t) == pytest.approx(3 * 86400 + closes_minute * 60)
