"""Driving a world into a sink: paced runs take the simulated time divided by the speed and emit
the same events as unpaced ones, and a fast-forwarded start is not paced; a stop request still
flushes and yields a manifest that counts exactly what the sink received; a fleet that cannot
charge anywhere is refused up front."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from simulator.model import Station, VehicleSpec
from simulator.reference import from_documents
from simulator.runner import run
from simulator.sink import NullSink
from simulator.synthetic import synthetic_documents
from simulator.world import World, WorldConfig


class ListSink(NullSink):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[bytes] = []

    async def write(self, records):
        await super().write(records)
        self.values += [value for _, value in records]


def world(**config) -> World:
    return World(*from_documents(*synthetic_documents(stations=20)),
                 WorldConfig(**{"seed": 2, "vehicles": 100, "duration_h": 1, **config}))


def test_paced_run_takes_simulated_time_over_speed_and_emits_the_same_events():
    fast, paced = ListSink(), ListSink()
    asyncio.run(run(world(), fast))
    started = time.monotonic()
    manifest = asyncio.run(run(world(), paced, speed=36_000))  # one simulated hour in 0.1 s at least
    assert time.monotonic() - started >= 0.1
    assert sorted(paced.values) == sorted(fast.values)
    assert manifest.events_total == len(paced.values) and paced.manifest == manifest


def test_fast_forward_emits_its_hours_at_once_then_paces_the_rest():
    def timed(sink, **pacing) -> float:
        started = time.monotonic()
        asyncio.run(run(world(duration_h=2), sink, speed=7200, **pacing))  # two simulated hours: 1 s paced
        return time.monotonic() - started

    paced, forwarded = ListSink(), ListSink()
    whole, rest = timed(paced), timed(forwarded, fast_forward_s=3600)
    assert whole >= 1.0 and rest >= 0.5  # the pacing holds after the fast-forward
    assert rest < whole - 0.3, (rest, whole)  # the first hour was not paced
    assert sorted(forwarded.values) == sorted(paced.values)


def test_stop_request_flushes_and_counts_what_was_written():
    sink = ListSink()

    async def stop_after_a_while():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        # A busy morning, so that cars surely plug in within the 0.3 s (18 simulated minutes).
        busy = world(vehicles=2000, start=datetime(2026, 1, 5, 8, tzinfo=UTC))
        return await run(busy, sink, speed=3600, stop=stop)

    manifest = asyncio.run(stop_after_a_while())
    assert manifest.interrupted
    assert manifest.events_total == len(sink.values) > 0
    assert manifest.sessions_completed < manifest.sessions_started


def test_a_fleet_that_cannot_charge_anywhere_is_refused():
    dc_only = [Station("EVS1", "X", 0.0, 0.0, "DC Fast Charger", 150.0, ("CCS",), 2)]
    ac_only = [VehicleSpec("city", "City car", 21.3, 164, connector_types=("Type 2",))]
    with pytest.raises(ValueError, match="no vehicle has a compatible station"):
        World(dc_only, ac_only, WorldConfig(vehicles=5))
