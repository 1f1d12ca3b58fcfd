"""The event stream of one charging session, computed from its physics rather than stepped.

SimPy decides who plugs in where and for how long (world.py); between plug-in and unplug the
session's progress is a pure function of time, so its progress events are produced in bulk, up to
whatever simulated time the world has reached, instead of costing a SimPy event each.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from simulator.events import ENERGY_DECIMALS, POWER_DECIMALS, SOC_DECIMALS, SessionEventEncoder
from simulator.model import ChargeTrajectory

Record = tuple[bytes, bytes]  # (Kafka key = session_id, encoded event: JSON or Avro)
Emit = Callable[[Record], None]


class ChargingSession:
    """Emits session_started, then charging_progress every `interval_ms` strictly before the end,
    then session_ended, with consecutive seq numbers; times are epoch milliseconds."""

    __slots__ = ("key", "_encode", "_trajectory", "start_ms", "end_ms", "_interval_ms", "end_reason",
                 "_next_seq", "_next_ms", "_flat_last_ms", "_flat_power", "_soc_per_ms", "_kwh_per_ms")

    def __init__(self, key: bytes, encoder: SessionEventEncoder, trajectory: ChargeTrajectory,
                 start_ms: int, duration_ms: int, interval_ms: int, end_reason: str) -> None:
        self.key = key
        self._encode = encoder.encode
        self._trajectory = trajectory
        self.start_ms = start_ms
        self.end_ms = start_ms + duration_ms
        self._interval_ms = interval_ms
        self.end_reason = end_reason
        self._next_seq = 1
        self._next_ms = start_ms + interval_ms
        # Before the taper, power is constant and SoC and energy are linear in time: the closed form
        # reduces to two multiplications, precomputed here for the simulator's hottest loop.
        flat_s = min(trajectory.taper_start_s, duration_ms / 1000.0)
        self._flat_last_ms = start_ms + math.floor(flat_s * 1000.0)
        self._flat_power = str(round(trajectory.cap_kw, POWER_DECIMALS))
        self._soc_per_ms = trajectory.soc_per_s / 1000.0
        self._kwh_per_ms = trajectory.cap_kw / 3_600_000.0

    def _state(self, at_ms: int) -> tuple[float, float, float]:
        """Rounded (power kW, energy kWh, SoC %) at `at_ms`."""
        t = self._trajectory
        soc = min(t.soc_at((at_ms - self.start_ms) / 1000.0), 100.0)
        return (round(t.power_at(soc), POWER_DECIMALS), round(t.energy_at(soc), ENERGY_DECIMALS),
                round(soc, SOC_DECIMALS))

    def started(self, emit: Emit) -> None:
        emit((self.key, self._encode("session_started", 0, self.start_ms, *self._state(self.start_ms))))

    def progress_until(self, until_ms: int, emit: Emit) -> int:
        """Emit the progress events due at or before `until_ms`; returns how many."""
        last = min(until_ms, self.end_ms - 1)
        at, seq = self._next_ms, self._next_seq
        if at > last:
            return 0
        key, encode, interval, start = self.key, self._encode, self._interval_ms, self.start_ms
        first = seq
        flat_last = min(last, self._flat_last_ms)
        if at <= flat_last:
            power, soc0 = self._flat_power, self._trajectory.soc0
            soc_per_ms, kwh_per_ms = self._soc_per_ms, self._kwh_per_ms
            while at <= flat_last:
                elapsed = at - start
                emit((key, encode("charging_progress", seq, at, power, round(kwh_per_ms * elapsed, ENERGY_DECIMALS),
                                  round(soc0 + soc_per_ms * elapsed, SOC_DECIMALS))))
                seq += 1
                at += interval
            if at > last:
                self._next_ms, self._next_seq = at, seq
                return seq - first
        t = self._trajectory
        soc_at, power_at, energy_at = t.soc_at, t.power_at, t.energy_at
        while at <= last:
            soc = soc_at((at - start) / 1000.0)
            emit((key, encode("charging_progress", seq, at, round(power_at(soc), POWER_DECIMALS),
                              round(energy_at(soc), ENERGY_DECIMALS), round(soc, SOC_DECIMALS))))
            seq += 1
            at += interval
        self._next_ms, self._next_seq = at, seq
        return seq - first

    def ended(self, emit: Emit) -> tuple[int, float]:
        """Emit the remaining progress and session_ended; returns (progress events, energy kWh)."""
        progress = self.progress_until(self.end_ms - 1, emit)
        power, energy, soc = self._state(self.end_ms)
        emit((self.key, self._encode("session_ended", self._next_seq, self.end_ms, power, energy, soc,
                                     self.end_reason)))
        return progress, energy
