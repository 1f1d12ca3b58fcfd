"""The comparison with published statistics: each published figure is well formed and cited, it is
set beside the same statistic of the simulated sessions of its site type, the factor-of-1.5 verdict
is computed right, and simulated sessions are summarised from their start and end events."""

from __future__ import annotations

import pytest

from simulator.fidelity import (
    DURATION_MIN, ENERGY_KWH, PUBLISHED, STATISTICS, Published, SessionSummary, arrival_shares, compare,
    session_summaries, site_profile,
)
from simulator.sites import DC_FAST, SITE_TYPES, WORKPLACE


def test_published_figures_are_well_formed_and_cited():
    assert {p.site for p in PUBLISHED} <= set(SITE_TYPES)
    for p in PUBLISHED:
        assert p.measure in (DURATION_MIN, ENERGY_KWH) and p.statistic in STATISTICS and p.value > 0
        assert len(p.source) > 40  # author or publisher, title, what was measured
        if p.low is not None:
            assert p.low <= p.value <= p.high
    targets = {(p.site, p.measure) for p in PUBLISHED if not p.caveat}
    assert {(DC_FAST, DURATION_MIN), (DC_FAST, ENERGY_KWH)} <= targets


def summary(site: str, minutes: float, kwh: float) -> SessionSummary:
    return SessionSummary(site, minutes, kwh, 8)


def test_each_figure_meets_the_same_statistic_of_its_own_site_type():
    sessions = [summary(DC_FAST, m, e) for m, e in ((20, 10), (30, 20), (100, 60))] + [summary(WORKPLACE, 500, 5)]
    median_duration = Published(DC_FAST, DURATION_MIN, "median", 20.0, "test")
    mean_energy = Published(DC_FAST, ENERGY_KWH, "mean", 20.0, "test")
    no_sessions = Published("public_ac", DURATION_MIN, "median", 60.0, "test")
    rows = compare(sessions, (median_duration, mean_energy, no_sessions))
    assert [(r.sessions, r.simulated, r.ratio, r.within) for r in rows] == [
        (3, 30.0, 1.5, True), (3, 30.0, 1.5, True), (0, None, None, False)]


@pytest.mark.parametrize("simulated, within", [(13.4, True), (13.3, False), (30.0, True), (30.1, False)])
def test_within_a_factor_of_one_and_a_half_either_way(simulated, within):
    (row,) = compare([summary(DC_FAST, simulated, 1.0)], (Published(DC_FAST, DURATION_MIN, "mean", 20.0, "t"),))
    assert row.within is within


def test_sessions_are_summarised_from_their_start_and_end(simulated_day):
    summaries = session_summaries(simulated_day.records, simulated_day.world)
    assert len(summaries) == simulated_day.world.sessions_completed
    by_duration = sorted(summaries, key=lambda s: s.duration_min)
    ended = sorted((e for e in simulated_day.events if e["event_type"] == "session_ended"),
                   key=lambda e: e["energy_kwh"])
    assert sorted(s.energy_kwh for s in summaries) == [e["energy_kwh"] for e in ended]
    assert by_duration[0].duration_min > 0 and by_duration[-1].duration_min < 24 * 60
    shares = arrival_shares(summaries)
    assert all(sum(shares[site]) == pytest.approx(1.0) for site in {s.site for s in summaries})


def test_site_profile_ties_energy_to_time():
    sessions = [summary(DC_FAST, 30, 30.0), summary(DC_FAST, 90, 30.0), summary(DC_FAST, 60, 60.0)]
    assert site_profile(sessions) == {DC_FAST: {"sessions": 3, "median_duration_min": 60,
                                                "median_energy_kwh": 30.0, "average_power_kw": 40.0}}

