"""Charging physics: vehicles, stations and the state-of-charge trajectory of one session.

A session draws the current its charger delivers through a connector that carries it (see
`simulator.connectors`): AC is capped by the charger, the connector's AC rating and the vehicle's
on-board charger; DC by the charger and the vehicle's DC limit. Power follows a charging curve: that
cap up to TAPER_START_PCT state of charge, then a linear taper down to TAPER_FLOOR of the cap at
100 %. Because the curve is linear in SoC, SoC over time has a closed form
(linear, then an exponential approach), so energy is the exact integral of power, not a sum of steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.connectors import CONNECTORS, carries

AC_CHARGER_TYPES = ("AC Level 1", "AC Level 2")
DC_CHARGER_TYPE = "DC Fast Charger"
CHARGER_TYPES = (*AC_CHARGER_TYPES, DC_CHARGER_TYPE)
DEFAULT_AC_MAX_KW = 11.0  # the common on-board charger when the vehicle's own figure is unknown
TAPER_START_PCT = 80.0
TAPER_FLOOR = 0.1
DAY_S = 86_400


def dc_max_kw(fast_charge_km_per_h: float | None, efficiency_wh_per_km: float) -> float | None:
    """DC power limit from the "km of range added per hour" figure: km/h x Wh/km = W."""
    if fast_charge_km_per_h is None:
        return None
    return fast_charge_km_per_h * efficiency_wh_per_km / 1000.0


@dataclass(frozen=True, slots=True)
class VehicleSpec:
    """A vehicle model (one row of the vehicles collection)."""

    model_id: str
    name: str
    battery_kwh: float
    efficiency_wh_per_km: float
    ac_max_kw: float = DEFAULT_AC_MAX_KW
    dc_max_kw: float | None = None
    connector_types: tuple[str, ...] = ("Type 2",)


@dataclass(frozen=True, slots=True)
class Station:
    """A charging station: `parking_spots` chargers of one type, open [open_minute, close_minute)
    every day of the simulated UTC clock (a close before the open wraps past midnight)."""

    station_id: str
    city: str
    latitude: float
    longitude: float
    charger_type: str
    power_kw: float
    connector_types: tuple[str, ...]
    parking_spots: int
    open_minute: int = 0
    close_minute: int = 1440

    @property
    def is_dc(self) -> bool:
        return self.charger_type == DC_CHARGER_TYPE

    @property
    def always_open(self) -> bool:
        return self.open_minute == 0 and self.close_minute >= 1440

    def is_open(self, t_s: float) -> bool:
        """Whether the station is open at `t_s` seconds after a UTC midnight."""
        if self.always_open:
            return True
        minute = (t_s % DAY_S) / 60.0
        if self.open_minute < self.close_minute:
            return self.open_minute <= minute < self.close_minute
        return minute >= self.open_minute or minute < self.close_minute

    def closes_at(self, t_s: float) -> float:
        """When the opening interval containing `t_s` ends (inf if it never closes).
        Only meaningful while open."""
        if self.always_open:
            return math.inf
        day_start = t_s - t_s % DAY_S
        close = day_start + self.close_minute * 60.0
        if close <= t_s:  # the interval wraps past midnight
            close += DAY_S
        return close


def session_power_cap(station: Station, vehicle: VehicleSpec, connector: str) -> float:
    """The most a session can draw: on DC the lower of charger and vehicle DC limit; on AC the lowest
    of charger, connector rating and on-board charger. 0 when the connector cannot carry the current."""
    if not carries(connector, station.is_dc):
        return 0.0
    if station.is_dc:
        return max(0.0, min(station.power_kw, vehicle.dc_max_kw or 0.0))
    return max(0.0, min(station.power_kw, CONNECTORS[connector].ac_max_kw, vehicle.ac_max_kw))


def shared_connector(station: Station, vehicle: VehicleSpec) -> str | None:
    """The first of the station's connectors that the vehicle has and that carries the station's
    current (AC or DC), or None when they cannot charge together."""
    if station.is_dc and not vehicle.dc_max_kw:
        return None
    for connector in station.connector_types:
        if connector in vehicle.connector_types and carries(connector, station.is_dc):
            return connector
    return None


def curve_fraction(soc_pct: float) -> float:
    """Share of the power cap the battery accepts at this state of charge."""
    if soc_pct <= TAPER_START_PCT:
        return 1.0
    return 1.0 - (1.0 - TAPER_FLOOR) * (soc_pct - TAPER_START_PCT) / (100.0 - TAPER_START_PCT)


# Slope of the taper in 1/percent: fraction = 1 - _K * (soc - TAPER_START_PCT).
_K = (1.0 - TAPER_FLOOR) / (100.0 - TAPER_START_PCT)


class ChargeTrajectory:
    """SoC, power and energy of one session as functions of the time since plug-in.

    With c = 100 * cap / battery (SoC points per second at full power), dSoC/dt = c * fraction(SoC):
    SoC rises linearly to the taper start, then u = SoC - start follows du/dt = c (1 - K u), i.e.
    u(t) = (1 - (1 - K u0) e^(-cKt)) / K. Energy = battery * (SoC - SoC0) / 100 is then exactly the
    integral of power = cap * fraction(SoC).
    """

    __slots__ = ("cap_kw", "battery_kwh", "soc0", "_c", "_t_taper")

    @property
    def soc_per_s(self) -> float:
        """SoC points per second before the taper."""
        return self._c

    @property
    def taper_start_s(self) -> float:
        """Seconds from plug-in until the taper starts (0 if it started above it, inf if never)."""
        return self._t_taper

    def __init__(self, cap_kw: float, battery_kwh: float, soc0: float) -> None:
        self.cap_kw = cap_kw
        self.battery_kwh = battery_kwh
        self.soc0 = soc0
        self._c = 100.0 * cap_kw / battery_kwh / 3600.0
        if soc0 >= TAPER_START_PCT:
            self._t_taper = 0.0
        else:
            self._t_taper = math.inf if self._c <= 0 else (TAPER_START_PCT - soc0) / self._c

    def soc_at(self, t_s: float) -> float:
        if t_s <= self._t_taper:
            return self.soc0 + self._c * t_s
        u0 = max(self.soc0 - TAPER_START_PCT, 0.0)
        dt = t_s - self._t_taper
        return TAPER_START_PCT + (1.0 - (1.0 - _K * u0) * math.exp(-self._c * _K * dt)) / _K

    def power_at(self, soc_pct: float) -> float:
        return self.cap_kw * curve_fraction(soc_pct)

    def energy_at(self, soc_pct: float) -> float:
        return self.battery_kwh * (soc_pct - self.soc0) / 100.0

    def time_to(self, target_soc: float) -> float:
        """Seconds from plug-in until SoC reaches `target_soc` (0 if already there)."""
        if target_soc <= self.soc0:
            return 0.0
        if self._c <= 0:
            return math.inf
        if target_soc <= TAPER_START_PCT:
            return (target_soc - self.soc0) / self._c
        u0 = max(self.soc0 - TAPER_START_PCT, 0.0)
        u = target_soc - TAPER_START_PCT
        return self._t_taper + math.log((1.0 - _K * u0) / (1.0 - _K * u)) / (self._c * _K)
