"""Site types: when cars arrive at workplace, public AC and DC fast sites, and how long they stay.

The reference data has no site type, so it is read off the charger: DC chargers are DC fast sites;
an AC site that closes at night is a workplace (an employer's car park keeps office hours); an AC
site open around the clock is public (street or retail) charging. The simulated clock is UTC and
every site keeps UTC hours, so "8 a.m." means 08:00 UTC at every site.

The figures behind the profiles and stays, and how far the simulation matches published data, are
in FIDELITY.md; what is assumed rather than published is marked so here.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulator.model import Station

WORKPLACE, PUBLIC_AC, DC_FAST = "workplace", "public_ac", "dc_fast"
SITE_TYPES = (WORKPLACE, PUBLIC_AC, DC_FAST)


def _per_hour_mean_one(weights: tuple[float, ...]) -> tuple[float, ...]:
    mean = sum(weights) / len(weights)
    return tuple(w / mean for w in weights)


# Relative arrival intensity per hour of the day, scaled to mean 1.
ARRIVAL_PROFILES: dict[str, tuple[float, ...]] = {
    # Employees plug in "when they arrive at work around 8 a.m. or after lunch" (ChargePoint,
    # Charging Forward at Work 2022); the night is nearly empty.
    WORKPLACE: _per_hour_mean_one((0.02, 0.02, 0.02, 0.02, 0.05, 0.2, 0.8, 2.5, 4.0, 2.5, 1.2, 1.0,
                                   1.8, 1.8, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.05, 0.02, 0.02, 0.02)),
    # Assumed, no published profile found (the simulator's earlier one-for-all profile): errands by
    # day, a peak after work, a night trough.
    PUBLIC_AC: _per_hour_mean_one((0.25, 0.15, 0.1, 0.1, 0.15, 0.3, 0.7, 1.3, 1.7, 1.5, 1.2, 1.2,
                                   1.4, 1.3, 1.1, 1.1, 1.4, 1.8, 1.9, 1.6, 1.3, 1.0, 0.7, 0.45)),
    # Assumed (no published profile found): trips by day, busiest from late morning to early evening.
    DC_FAST: _per_hour_mean_one((0.2, 0.1, 0.1, 0.1, 0.15, 0.3, 0.6, 1.0, 1.3, 1.4, 1.5, 1.6,
                                 1.7, 1.6, 1.6, 1.6, 1.7, 1.8, 1.7, 1.4, 1.1, 0.8, 0.5, 0.3)),
}


@dataclass(frozen=True, slots=True)
class Stay:
    """How a driver uses one site type: arrival state of charge (triangular low, high, mode), the
    state of charge that ends charging (uniform range), and how long they stay (log-normal)."""

    soc0: tuple[float, float, float]
    target_soc: tuple[float, float]
    dwell_median_s: float
    dwell_sigma: float

    def draw(self, rng: random.Random) -> tuple[float, float, float]:
        """(arrival SoC %, target SoC %, dwell s), drawn in that order."""
        low, high, mode = self.soc0
        return (rng.triangular(low, high, mode), rng.uniform(*self.target_soc),
                rng.lognormvariate(math.log(self.dwell_median_s), self.dwell_sigma))


STAYS: dict[str, Stay] = {
    # Commuters arrive with about half a battery (assumed) and stay a quarter of a workday or so:
    # ChargePoint reports workplace sessions averaging 2 h 24 min and (2022) 2 h 36 min. A log-normal
    # of median 2.5 h and sigma 0.6 has a mean of 3 h, before targets and closing hours cut it.
    WORKPLACE: Stay(soc0=(20.0, 80.0, 50.0), target_soc=(80.0, 100.0), dwell_median_s=2.5 * 3600,
                    dwell_sigma=0.6),
    # Assumed: errands of an hour or two, charging to near full.
    PUBLIC_AC: Stay(soc0=(10.0, 70.0, 35.0), target_soc=(80.0, 100.0), dwell_median_s=1.5 * 3600,
                    dwell_sigma=0.6),
    # Fast charging is a stop on a trip: arrive low, leave at 70-85 % (the taper starts at 80 %),
    # rarely stay past the better part of an hour. Tuned so that duration and energy both land
    # within 1.5 of the published DC figures (FIDELITY.md explains why they cannot both match).
    DC_FAST: Stay(soc0=(10.0, 55.0, 25.0), target_soc=(70.0, 85.0), dwell_median_s=45 * 60.0,
                  dwell_sigma=0.35),
}


def site_type(station: Station) -> str:
    """DC fast for a DC charger; else public AC when open around the clock, workplace otherwise."""
    if station.is_dc:
        return DC_FAST
    return PUBLIC_AC if station.always_open else WORKPLACE


@dataclass(frozen=True)
class ArrivalMix:
    """Arrivals per hour over a set of stations: each site type contributes its share of the
    stations times its hourly profile, so the daily total is the same as one flat profile's."""

    rates: tuple[tuple[float, ...], ...]  # [hour][site type index], in SITE_TYPES order

    @classmethod
    def of(cls, stations: list[Station]) -> ArrivalMix:
        counts = {s: 0 for s in SITE_TYPES}
        for station in stations:
            counts[site_type(station)] += 1
        total = max(1, len(stations))
        return cls(tuple(tuple(counts[s] / total * ARRIVAL_PROFILES[s][hour] for s in SITE_TYPES)
                         for hour in range(24)))

    @property
    def peak(self) -> float:
        return max(sum(hour) for hour in self.rates)

    def rate(self, hour: int) -> float:
        """Relative arrival intensity in this hour of the day (mean 1 over the day)."""
        return sum(self.rates[hour])

    def site_at(self, hour: int, u: float) -> str:
        """The site type of an arrival in `hour`, for a uniform draw `u` in [0, 1)."""
        left = u * self.rate(hour)
        chosen = None
        for site, rate in zip(SITE_TYPES, self.rates[hour], strict=True):
            if rate > 0:
                chosen = site
                if left < rate:
                    break
            left -= rate
        return chosen  # the last site with arrivals when rounding leaves `left` at the top end
