"""Shared fixtures: a small deterministic reference set and one simulated day over it, and the
acceptance days of 2,000 vehicles over the synthetic stations and over the Kaggle stations."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pytest

from evcharging.reference.datasets import STATIONS, VEHICLES
from evcharging_tests.reference.conftest import kaggle_stations_csv, kaggle_vehicles_csv  # noqa: F401 (fixtures)
from simulator.events import decode
from simulator.model import Station, VehicleSpec
from simulator.reference import from_documents
from simulator.synthetic import synthetic_documents
from simulator.world import World, WorldConfig

FLEET_DAY = WorldConfig(seed=7, vehicles=2000, duration_h=24)  # the acceptance run


def run_world(config: WorldConfig, stations: int = 60,
              reference: tuple[list[Station], list[VehicleSpec]] | None = None,
              ) -> tuple[World, list[tuple[bytes, bytes]]]:
    """Run a world to its end over `reference` (default: `stations` synthetic stations); return it
    and its records."""
    world = World(*(reference or from_documents(*synthetic_documents(stations=stations))), config)
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

    @classmethod
    def of(cls, world: World, records: list[tuple[bytes, bytes]]) -> SimulatedDay:
        events = [decode(value) for _, value in records]
        sessions: dict[str, list[dict]] = defaultdict(list)
        for event in events:
            sessions[event["session_id"]].append(event)
        return cls(world, records, events, dict(sessions))

    @property
    def stations(self) -> dict[str, Station]:
        return {s.station_id: s for s in self.world.stations}

    @property
    def specs(self) -> dict[str, VehicleSpec]:
        """Each fleet vehicle's model, by vehicle id."""
        return {v.vehicle_id: v.spec for v in self.world.vehicles}


@pytest.fixture(scope="package")
def simulated_day() -> SimulatedDay:
    """A contended day: 400 vehicles on 60 stations of 1-4 spots, some 9-18 or 6-22 only,
    with a high fault rate so that every end reason occurs."""
    return SimulatedDay.of(*run_world(WorldConfig(seed=11, vehicles=400, duration_h=24, fault_probability=0.05)))


@pytest.fixture(scope="package")
def synthetic_fleet_day() -> SimulatedDay:
    """2,000 vehicles for 24 h over the 60 synthetic stations."""
    return SimulatedDay.of(*run_world(FLEET_DAY))


@pytest.fixture(scope="package")
def kaggle_fleet_day(kaggle_stations_csv, kaggle_vehicles_csv) -> SimulatedDay:  # noqa: F811 (fixtures)
    """2,000 vehicles for 24 h over the 5,000 Kaggle stations, loaded as the reference assets load them."""
    reference = from_documents(STATIONS.prepare(kaggle_stations_csv).documents,
                               VEHICLES.prepare(kaggle_vehicles_csv).documents)
    return SimulatedDay.of(*run_world(FLEET_DAY, reference=reference))
