"""Site types: a station's type follows from its charger and hours; each type's arrival profile
averages 1 so mixing them keeps the daily volume; the hourly mix sends each arrival to a site type
in proportion to its share of the stations and its profile; stays are drawn within their ranges."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from simulator.model import Station
from simulator.sites import ARRIVAL_PROFILES, DC_FAST, PUBLIC_AC, SITE_TYPES, STAYS, WORKPLACE, ArrivalMix, site_type


def station(charger_type: str = "AC Level 2", hours: tuple[int, int] = (0, 1440), n: int = 1) -> Station:
    return Station(f"EVS{n}", "Berlin", 52.5, 13.4, charger_type, 22.0, ("Type 2",), 2, *hours)


@pytest.mark.parametrize("charger, hours, expected", [
    ("DC Fast Charger", (0, 1440), DC_FAST),
    ("DC Fast Charger", (540, 1080), DC_FAST),
    ("AC Level 2", (0, 1440), PUBLIC_AC),
    ("AC Level 1", (360, 1320), WORKPLACE),
    ("AC Level 2", (540, 1080), WORKPLACE),
])  # fmt: skip
def test_site_type_follows_charger_and_hours(charger, hours, expected):
    assert site_type(station(charger, hours)) == expected


def test_profiles_average_one_and_workplaces_fill_in_the_morning():
    for profile in ARRIVAL_PROFILES.values():
        assert len(profile) == 24 and sum(profile) / 24 == pytest.approx(1.0)
    workplace = ARRIVAL_PROFILES[WORKPLACE]
    assert max(range(24), key=workplace.__getitem__) == 8
    assert sum(workplace[6:10]) > sum(workplace) / 2
    assert max(workplace[:5]) < 0.1 * max(workplace)


def test_the_mix_keeps_the_daily_volume_and_follows_each_profile():
    stations = [station("DC Fast Charger", n=1), station(n=2), station(hours=(540, 1080), n=3),
                station(hours=(540, 1080), n=4)]
    mix = ArrivalMix.of(stations)
    assert sum(mix.rate(h) for h in range(24)) / 24 == pytest.approx(1.0)
    assert mix.peak == max(mix.rate(h) for h in range(24))
    rng = random.Random(3)
    at_eight = Counter(mix.site_at(8, rng.random()) for _ in range(20_000))
    expected = {s: 0.25 * ARRIVAL_PROFILES[s][8] * (2 if s == WORKPLACE else 1) / mix.rate(8) for s in SITE_TYPES}
    for site in SITE_TYPES:
        assert at_eight[site] / 20_000 == pytest.approx(expected[site], abs=0.015)


def test_a_site_type_without_stations_gets_no_arrival():
    mix = ArrivalMix.of([station("DC Fast Charger")])
    assert {mix.site_at(h, u) for h in range(24) for u in (0.0, 0.5, 0.999999999)} == {DC_FAST}


def test_stays_are_drawn_within_their_ranges():
    rng = random.Random(5)
    for site, stay in STAYS.items():
        draws = [stay.draw(rng) for _ in range(2000)]
        low, high, _ = stay.soc0
        assert all(low <= soc0 <= high and stay.target_soc[0] <= target <= stay.target_soc[1] and dwell > 0
                   for soc0, target, dwell in draws), site
        dwells = sorted(d for _, _, d in draws)
        assert dwells[1000] == pytest.approx(stay.dwell_median_s, rel=0.1)
    assert STAYS[DC_FAST].dwell_median_s < STAYS[PUBLIC_AC].dwell_median_s < STAYS[WORKPLACE].dwell_median_s
