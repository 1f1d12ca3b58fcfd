"""A simulated contended day obeys the physics and the rules: energy is the integral of the emitted
power, power stays within charger, connector and vehicle limits, every session uses a connector
that carries its current, SoC stays in 0-100 and rises, sequence numbers are consecutive, chargers
in use never exceed parking spots, nobody charges at a closed station, and the same seed replays
the same events."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from simulator.events import END_REASONS, validate
from simulator.sites import STAYS
from simulator.world import WorldConfig

from .conftest import run_world
from .invariants import connector_violations, energy_violations, power_violations, seconds


def test_every_event_is_valid(simulated_day):
    assert len(simulated_day.sessions) > 200
    assert all(validate(e) == [] for e in simulated_day.events)


def test_sessions_are_complete_with_consecutive_seq(simulated_day):
    for events in simulated_day.sessions.values():
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert [e["event_type"] for e in events] == (
            ["session_started"] + ["charging_progress"] * (len(events) - 2) + ["session_ended"])
        assert len({e["wait_s"] for e in events}) == 1
        assert len({(e["station_id"], e["charger_id"], e["vehicle_id"], e["connector_type"]) for e in events}) == 1
        times = [seconds(e) for e in events]
        assert all(b > a for a, b in zip(times, times[1:]))
        assert all(b - a == pytest.approx(60.0) for a, b in zip(times[:-1], times[1:-1]))  # the interval


def test_soc_within_bounds_and_rising(simulated_day):
    for events in simulated_day.sessions.values():
        socs = [e["soc_pct"] for e in events]
        assert all(0 <= s <= 100 for s in socs)
        assert all(b >= a for a, b in zip(socs, socs[1:]))
        assert socs[-1] > socs[0]


def test_energy_is_the_integral_of_the_emitted_power(simulated_day):
    assert energy_violations(simulated_day.sessions) == []


def test_energy_matches_soc_and_battery(simulated_day):
    specs = simulated_day.specs
    for events in simulated_day.sessions.values():
        battery = specs[events[0]["vehicle_id"]].battery_kwh
        for e in events:
            delivered = battery * (e["soc_pct"] - events[0]["soc_pct"]) / 100
            assert e["energy_kwh"] == pytest.approx(delivered, abs=2e-3)


def test_power_and_connectors_respect_charger_connector_and_vehicle(simulated_day):
    day = simulated_day
    assert power_violations(day.events, day.stations, day.specs) == []
    assert connector_violations(day.sessions, day.stations, day.specs) == []


def test_chargers_in_use_never_exceed_parking_spots(simulated_day):
    stations = simulated_day.stations
    changes = []  # (time, +1/-1, station, charger); an unplug sorts before a plug-in at the same instant
    for events in simulated_day.sessions.values():
        first, last = events[0], events[-1]
        changes.append((seconds(first), 1, first["station_id"], first["charger_id"]))
        changes.append((seconds(last), -1, first["station_id"], first["charger_id"]))
    in_use, busy = Counter(), set()
    peak = Counter()
    for _, delta, station_id, charger_id in sorted(changes):
        in_use[station_id] += delta
        assert in_use[station_id] <= stations[station_id].parking_spots
        peak[station_id] = max(peak[station_id], in_use[station_id])
        if delta > 0:
            assert charger_id not in busy
            assert 1 <= int(charger_id.rsplit("-", 1)[1]) <= stations[station_id].parking_spots
            busy.add(charger_id)
        else:
            busy.remove(charger_id)
    assert any(peak[s] == stations[s].parking_spots > 1 for s in peak)  # the day was contended


def test_no_session_at_a_closed_station(simulated_day):
    stations = simulated_day.stations
    limited = 0
    for events in simulated_day.sessions.values():
        station = stations[events[0]["station_id"]]
        if station.always_open:
            continue
        limited += 1
        start, end = seconds(events[0]), seconds(events[-1])
        assert station.is_open(start)
        assert end <= station.closes_at(start) + 1e-3
        if events[-1]["end_reason"] == "station_closing":
            assert end == pytest.approx(station.closes_at(start), abs=1e-3)
    assert limited > 20


def test_queueing_and_every_end_reason_happen(simulated_day):
    world = simulated_day.world
    ended = [e for e in simulated_day.events if e["event_type"] == "session_ended"]
    assert Counter(e["end_reason"] for e in ended).keys() == set(END_REASONS)
    assert any(e["wait_s"] > 0 for e in ended)
    assert world.sessions_abandoned > 0
    assert world.sessions_started == world.sessions_completed == len(ended)
    assert world.counts == Counter(e["event_type"] for e in simulated_day.events)
    assert world.energy_kwh == pytest.approx(sum(e["energy_kwh"] for e in ended), abs=0.01)
    target_ends = [e for e in ended if e["end_reason"] == "target_soc"]
    lowest_target = min(stay.target_soc[0] for stay in STAYS.values())
    assert target_ends and all(e["soc_pct"] >= lowest_target - 1e-3 for e in target_ends)


def test_same_seed_same_records_different_seed_different(simulated_day):
    config = WorldConfig(seed=11, vehicles=400, duration_h=24, fault_probability=0.05)
    assert run_world(config)[1] == simulated_day.records
    assert run_world(WorldConfig(seed=12, vehicles=400, duration_h=24, fault_probability=0.05))[1] != \
        simulated_day.records


def test_session_limit_is_exact():
    world, records = run_world(WorldConfig(seed=3, vehicles=200, duration_h=None, sessions=50))
    assert world.sessions_started == world.sessions_completed == 50
    assert sum(1 for _, v in records if b'"session_ended"' in v) == 50


def test_longer_progress_interval_gives_fewer_events_same_physics():
    coarse, _ = run_world(WorldConfig(seed=5, vehicles=100, duration_h=12, progress_interval_s=600))
    fine, _ = run_world(WorldConfig(seed=5, vehicles=100, duration_h=12))
    assert coarse.counts["charging_progress"] < fine.counts["charging_progress"] / 5
    assert coarse.sessions_completed == fine.sessions_completed
    assert math.isclose(coarse.energy_kwh, fine.energy_kwh, rel_tol=1e-9)
