"""Simulated sessions against published real-world charging statistics, per site type.

`PUBLISHED` holds only figures found in a source that is cited next to each; FIDELITY.md says how
they were found and which were looked for but not found. Each figure is compared with the same
statistic (median or mean) of the simulated sessions of its site type.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from simulator.events import parse_event_time
from simulator.sites import DC_FAST, SITE_TYPES, WORKPLACE
from simulator.world import World

DURATION_MIN, ENERGY_KWH = "duration_min", "energy_kwh"
STATISTICS = {"median": statistics.median, "mean": statistics.fmean}


@dataclass(frozen=True, slots=True)
class Published:
    """One published figure: `value` (the midpoint when the source gives a range low..high), and
    `caveat`, what keeps it from being a like-for-like target (empty for the targets)."""

    site: str
    measure: str
    statistic: str
    value: float
    source: str
    low: float | None = None
    high: float | None = None
    caveat: str = ""


MAHLBERG_2023 = ("Mahlberg, Desai & Bullock 2023, World Electric Vehicle Journal 14(11):308, abstract: "
                 ">4,000 sessions at 50/150/350 kW stations, Lafayette IN, median charge time 28-36 min")
DOE_VTO_2023 = ("U.S. DOE Vehicle Technologies Office, Fact of the Week, Dec 2023 (EV WATTS, 2.3 M sessions "
                "at non-Tesla DC stations, Jun 2020-Jun 2023), as reported by CleanTechnica 2023-12-07")
FIGENBAUM_TOI = ("Figenbaum, 'Charging into the future - Analysis of fast charger usage', TOI (Norway), "
                 "2017 sessions at 50 kW chargers: average 20.3 min, 9.6 kWh")
CHARGEPOINT_WORK = ("ChargePoint, 'Charging Forward at Work', internal data: average workplace session "
                    "2 h 24 min (undated edition) and 2 h 36 min (2022 edition)")

PUBLISHED: tuple[Published, ...] = (
    Published(DC_FAST, DURATION_MIN, "median", 32.0, MAHLBERG_2023, low=28.0, high=36.0),
    Published(DC_FAST, DURATION_MIN, "mean", 42.0, DOE_VTO_2023 + ", paid sessions"),
    Published(DC_FAST, ENERGY_KWH, "mean", 22.0, DOE_VTO_2023 + ", paid sessions"),
    Published(DC_FAST, DURATION_MIN, "mean", 54.0, DOE_VTO_2023 + ", all sessions",
              caveat="40 % of these sessions were free, and free sessions averaged 78 min and 40.7 kWh"),
    Published(DC_FAST, ENERGY_KWH, "mean", 29.4, DOE_VTO_2023 + ", all sessions",
              caveat="40 % of these sessions were free, and free sessions averaged 78 min and 40.7 kWh"),
    Published(DC_FAST, DURATION_MIN, "mean", 20.3, FIGENBAUM_TOI,
              caveat="2017 fleet (small batteries) at 50 kW chargers, averaging 30.5 kW: context only"),
    Published(DC_FAST, ENERGY_KWH, "mean", 9.6, FIGENBAUM_TOI,
              caveat="2017 fleet (small batteries) at 50 kW chargers, averaging 30.5 kW: context only"),
    Published(WORKPLACE, DURATION_MIN, "mean", 150.0, CHARGEPOINT_WORK, low=144.0, high=156.0,
              caveat="a vendor's mean, not a median; 'session' is not defined (plug-in time assumed)"),
)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One simulated session as the comparison sees it."""

    site: str
    duration_min: float
    energy_kwh: float
    arrival_hour: int


def session_summaries(records: Iterable[tuple[bytes, bytes]], world: World) -> list[SessionSummary]:
    """The sessions in `records` (a world's whole output): plug-in to unplug, energy at unplug, the
    hour the car plugged in. Only start and end events are decoded; progress events are skipped."""
    site_of = {s.station_id: site for s, site in zip(world.stations, world.site_types, strict=True)}
    started: dict[str, dict] = {}
    summaries = []
    for _, value in records:
        if b'"charging_progress"' in value:
            continue
        event = json.loads(value)
        if event["event_type"] == "session_started":
            started[event["session_id"]] = event
            continue
        start = started.pop(event["session_id"])
        began = parse_event_time(start["event_time"])
        minutes = (parse_event_time(event["event_time"]) - began).total_seconds() / 60
        summaries.append(SessionSummary(site_of[event["station_id"]], minutes, event["energy_kwh"], began.hour))
    return summaries


@dataclass(frozen=True, slots=True)
class Comparison:
    """A published figure beside the same statistic of the simulated sessions (None: no session)."""

    published: Published
    sessions: int
    simulated: float | None

    @property
    def ratio(self) -> float | None:
        return None if self.simulated is None else self.simulated / self.published.value

    @property
    def within(self) -> bool:
        """Within a factor of 1.5 either way of the published value."""
        return self.ratio is not None and 1 / 1.5 <= self.ratio <= 1.5


def compare(summaries: list[SessionSummary], published: Iterable[Published] = PUBLISHED) -> list[Comparison]:
    """Each published figure against its site type's simulated sessions."""
    rows = []
    for figure in published:
        values = [getattr(s, figure.measure) for s in summaries if s.site == figure.site]
        simulated = STATISTICS[figure.statistic](values) if values else None
        rows.append(Comparison(figure, len(values), simulated))
    return rows


def arrival_shares(summaries: list[SessionSummary]) -> dict[str, list[float]]:
    """Per site type, the share of its sessions that plugged in during each hour of the day."""
    shares = {}
    for site in SITE_TYPES:
        hours = Counter(s.arrival_hour for s in summaries if s.site == site)
        total = sum(hours.values())
        shares[site] = [hours[h] / total if total else 0.0 for h in range(24)]
    return shares


def site_profile(summaries: list[SessionSummary]) -> dict[str, dict[str, float]]:
    """Per site type with sessions: their count, median duration and energy, and the average power
    over all of them (total energy / total time), the figure that ties duration to energy."""
    profile = {}
    for site in SITE_TYPES:
        mine = [s for s in summaries if s.site == site]
        if mine:
            hours = sum(s.duration_min for s in mine) / 60
            profile[site] = {"sessions": len(mine),
                             "median_duration_min": statistics.median(s.duration_min for s in mine),
                             "median_energy_kwh": statistics.median(s.energy_kwh for s in mine),
                             "average_power_kw": sum(s.energy_kwh for s in mine) / hours}
    return profile

