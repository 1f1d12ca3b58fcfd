"""Shared fixtures: a small deterministic reference set and one simulated day over it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pytest

from simulator.events import decode
from simulator.reference import from_documents
from simulator.synthetic import synthetic_documents
from simulator.world import World, WorldConfig


def run_world(config: WorldConfig, stations: int = 60) -> tuple[World, list[tuple[bytes, bytes]]]:
    """Run a world over the synthetic reference set to its end; return it and its records."""
    world = World(*from_documents(*synthetic_documents(stations=stations)), config)
    records, until = [], 0.0
    while not world.finished:
        until += 60.0
        records += world.advance(until)
    return world, records


@dataclass
class SimulatedDay:
    world: World
    records: list[tuple[bytes, bytes]]
    events: list[dict]
    sessions: dict[str, list[dict]]


@pytest.fixture(scope="package")
def simulated_day() -> SimulatedDay:
    """A contended day: 400 vehicles on 60 stations of 1-4 spots, some 9-18 or 6-22 only,
    with a high fault rate so that every end reason occurs."""
    world, records = run_world(WorldConfig(seed=11, vehicles=400, duration_h=24, fault_probability=0.05))
    events = [decode(value) for _, value in records]
    sessions: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        sessions[event["session_id"]].append(event)
    return SimulatedDay(world, records, events, dict(sessions))
