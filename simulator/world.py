"""The SimPy world: a fleet living around the stations' cities, arriving to charge at workplace,
public AC and DC fast sites on each site type's time-of-day profile (`simulator.sites`), queueing
for a charger (a parking spot) and giving up when it waits too long, and charging until the target
state of charge, its departure, a fault or the station closing.

Everything random comes from one `random.Random(seed)` consumed in SimPy's deterministic event
order, and every timestamp is simulated, so the same seed and settings give the same events, byte
for byte. The world only produces encoded records; sinks and pacing live in `runner`.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import blake2b

import simpy
from simpy.events import Timeout

from simulator.avro import ENCODERS
from simulator.events import WAIT_DECIMALS, RunManifest, format_event_time
from simulator.model import DAY_S, ChargeTrajectory, Station, VehicleSpec, session_power_cap, shared_connector
from simulator.session import ChargingSession, Record
from simulator.sites import STAYS, ArrivalMix, site_type

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
MIN_CHARGE_S = 300.0  # nobody plugs in for less; closer to departure or closing they give up
NEIGHBOURS = 12  # stations looked at around a vehicle's home before filtering by compatibility


@dataclass(frozen=True)
class WorldConfig:
    """Settings of one run. `duration_h` stops arrivals after that simulated time, `sessions` once
    that many sessions started; sessions in progress then run to their end."""

    seed: int = 1
    run_id: str | None = None
    vehicles: int = 1000
    duration_h: float | None = 24.0
    sessions: int | None = None
    progress_interval_s: float = 60.0
    start: datetime = DEFAULT_START
    charges_per_vehicle_per_day: float = 1.0
    fault_probability: float = 0.01
    patience_mean_s: float = 900.0
    candidates_per_vehicle: int = 6
    encoding: str = "json"  # of the Kafka records: "json" or "avro" (simulator/avro.py)

    def resolved_run_id(self) -> str:
        """The given run id, else one derived from the settings: a re-run of the same settings
        repeats the event ids, which downstream deduplication relies on."""
        if self.run_id:
            return self.run_id
        text = repr((self.seed, self.vehicles, self.duration_h, self.sessions,
                     self.progress_interval_s, self.start.isoformat()))
        return f"sim-{self.seed}-{blake2b(text.encode(), digest_size=4).hexdigest()}"


@dataclass(slots=True)
class Vehicle:
    vehicle_id: str
    spec: VehicleSpec
    # (station index, connector, power cap kW), nearest first
    candidates: tuple[tuple[int, str, float], ...]


class World:
    """The simulation; call `advance(t)` repeatedly to get the records emitted up to `t` seconds."""

    def __init__(self, stations: list[Station], specs: list[VehicleSpec], config: WorldConfig) -> None:
        if config.progress_interval_s <= 0:
            raise ValueError("progress_interval_s must be positive")
        if config.encoding not in ENCODERS:
            raise ValueError(f"encoding must be one of {sorted(ENCODERS)}, not {config.encoding!r}")
        self.config = config
        self._encoder = ENCODERS[config.encoding]
        self.run_id = config.resolved_run_id()
        self.stations = stations
        self.site_types = [site_type(s) for s in stations]
        self.arrival_mix = ArrivalMix.of(stations)
        self.env = simpy.Environment()
        self.rng = random.Random(config.seed)
        self.start_ms = int(config.start.timestamp() * 1000)
        self._epoch0 = self.start_ms / 1000.0
        self._records: list[Record] = []
        self._resources = [simpy.Resource(self.env, capacity=s.parking_spots) for s in stations]
        self._free_chargers = [list(range(1, s.parking_spots + 1)) for s in stations]
        self.vehicles = self._build_fleet(specs)
        if self.vehicles and not any(v.candidates for v in self.vehicles):
            raise ValueError("no vehicle has a compatible station nearby (connectors, AC/DC): check the "
                             "reference data or widen --stations / --region")
        self._idle = list(range(len(self.vehicles)))
        self._waiting = 0
        self._active: dict[int, ChargingSession] = {}  # session number -> session, in plug-in order
        self._interval_ms = round(config.progress_interval_s * 1000)
        self.counts = {"session_started": 0, "charging_progress": 0, "session_ended": 0}
        self.sessions_started = 0
        self.sessions_completed = 0
        self.sessions_abandoned = 0
        self.arrivals_unserved = 0
        self.energy_kwh = 0.0  # delivered by completed sessions
        self.env.process(self._arrivals())

    # -- fleet ------------------------------------------------------------------------------

    def _build_fleet(self, specs: list[VehicleSpec]) -> list[Vehicle]:
        """Each vehicle lives near a station drawn uniformly (so busy cities get more vehicles)
        and considers the nearest compatible stations of that city."""
        rng, stations = self.rng, self.stations
        by_city: dict[str, list[int]] = {}
        for i, s in enumerate(stations):
            by_city.setdefault(s.city, []).append(i)
        neighbours: dict[int, list[int]] = {}
        candidates: dict[tuple[int, str], tuple[tuple[int, str, float], ...]] = {}
        fleet = []
        for n in range(1, self.config.vehicles + 1):
            spec = specs[rng.randrange(len(specs))]
            anchor = rng.randrange(len(stations))
            key = (anchor, spec.model_id)
            if key not in candidates:
                if anchor not in neighbours:
                    neighbours[anchor] = self._nearest(anchor, by_city[stations[anchor].city])
                candidates[key] = self._compatible(neighbours[anchor], spec)
            fleet.append(Vehicle(f"V{n:06d}", spec, candidates[key]))
        return fleet

    def _nearest(self, anchor: int, city: list[int]) -> list[int]:
        a = self.stations[anchor]
        scale = math.cos(math.radians(a.latitude)) ** 2

        def distance(i: int) -> float:
            s = self.stations[i]
            return (s.latitude - a.latitude) ** 2 + scale * (s.longitude - a.longitude) ** 2

        return sorted(city, key=lambda i: (distance(i), i))[:NEIGHBOURS]

    def _compatible(self, near: list[int], spec: VehicleSpec) -> tuple[tuple[int, str, float], ...]:
        found = []
        for i in near:
            connector = shared_connector(self.stations[i], spec)
            cap = session_power_cap(self.stations[i], spec, connector) if connector else 0.0
            if cap > 0:
                found.append((i, connector, cap))
        return tuple(found[: self.config.candidates_per_vehicle])

    # -- arrivals ----------------------------------------------------------------------------

    def _arrivals(self):
        """Non-homogeneous Poisson arrivals by thinning a process at the profile's peak rate; each
        arrival is headed for a site type drawn from that hour's mix."""
        env, rng, cfg, mix = self.env, self.rng, self.config, self.arrival_mix
        peak = mix.peak
        peak_rate = len(self.vehicles) * cfg.charges_per_vehicle_per_day / DAY_S * peak
        if peak_rate <= 0:
            return
        end_s = math.inf if cfg.duration_h is None else cfg.duration_h * 3600.0
        limit = cfg.sessions
        while True:
            yield Timeout(env, rng.expovariate(peak_rate))
            t = env.now
            if t >= end_s or (limit is not None and self.sessions_started >= limit):
                return
            hour = int((t + self._epoch0) % DAY_S // 3600)
            if rng.random() * peak >= mix.rate(hour):
                continue
            site = mix.site_at(hour, rng.random())
            if limit is not None and self.sessions_started + self._waiting >= limit:
                continue  # enough vehicles already plugged in or queueing for the limit
            if not self._idle:
                self.arrivals_unserved += 1
                continue
            # Draw an idle vehicle; swap-remove keeps this O(1) and deterministic.
            idle = self._idle
            j = rng.randrange(len(idle))
            idle[j], idle[-1] = idle[-1], idle[j]
            vehicle_index = idle.pop()
            choice = self._choose_station(self.vehicles[vehicle_index], t, site)
            if choice is None:
                self.arrivals_unserved += 1
                idle.append(vehicle_index)
                continue
            env.process(self._visit(vehicle_index, choice, t))

    def _choose_station(self, vehicle: Vehicle, t: float, site: str) -> tuple[int, str, float] | None:
        """A candidate of the wanted site type, else any candidate (a driver with no workplace
        charger nearby charges where they can); see `_best_open`."""
        wanted = [c for c in vehicle.candidates if self.site_types[c[0]] == site]
        return self._best_open(wanted, t) or self._best_open(vehicle.candidates, t)

    def _best_open(self, candidates, t: float) -> tuple[int, str, float] | None:
        """The nearest open candidate with a free charger, else the open one with the shortest
        queue; stations closing within MIN_CHARGE_S count as closed."""
        best, best_queue = None, math.inf
        abs_t = t + self._epoch0
        for candidate in candidates:
            i = candidate[0]
            station = self.stations[i]
            if not station.is_open(abs_t) or station.closes_at(abs_t) - abs_t < MIN_CHARGE_S:
                continue
            res = self._resources[i]
            if res.count < res.capacity:
                return candidate
            if len(res.queue) < best_queue:
                best, best_queue = candidate, len(res.queue)
        return best

    # -- one visit ---------------------------------------------------------------------------

    def _visit(self, vehicle_index: int, choice: tuple[int, str, float], arrival: float):
        env, rng, cfg = self.env, self.rng, self.config
        station_index, connector, cap_kw = choice
        station = self.stations[station_index]
        vehicle = self.vehicles[vehicle_index]
        # Draw everything up front so the random stream does not depend on how the visit ends.
        soc0, target, dwell = STAYS[self.site_types[station_index]].draw(rng)
        patience = rng.expovariate(1.0 / cfg.patience_mean_s)
        faulty, fault_at = rng.random() < cfg.fault_probability, rng.random()

        close = station.closes_at(arrival + self._epoch0) - self._epoch0
        departure = arrival + dwell
        give_up = min(arrival + patience, departure - MIN_CHARGE_S, close - MIN_CHARGE_S)
        res = self._resources[station_index]
        request = res.request()
        if not request.triggered:
            self._waiting += 1
            yield request | Timeout(env, max(0.0, give_up - arrival))
            self._waiting -= 1
            if not request.triggered:
                request.cancel()
                self.sessions_abandoned += 1
                self._idle.append(vehicle_index)
                return
        if departure - env.now < MIN_CHARGE_S or close - env.now < MIN_CHARGE_S:
            res.release(request)  # granted too late to be worth plugging in
            self.sessions_abandoned += 1
            self._idle.append(vehicle_index)
            return

        start = env.now
        self.sessions_started += 1
        session_no = self.sessions_started
        charger = heapq.heappop(self._free_chargers[station_index])
        session_id = f"{self.run_id}-{session_no:07d}"
        trajectory = ChargeTrajectory(cap_kw, vehicle.spec.battery_kwh, soc0)
        to_target = trajectory.time_to(target)
        ends = ((to_target, "target_soc"), (departure - start, "departure"),
                (to_target * fault_at if faulty else math.inf, "fault"),
                (close - start, "station_closing"))
        duration_s, end_reason = min(ends, key=lambda e: e[0])  # ties go to the earlier reason
        duration_ms = max(1, round(duration_s * 1000))
        encoder = self._encoder(self.run_id, session_id, station.station_id,
                                      f"{station.station_id}-{charger}", vehicle.vehicle_id, vehicle.spec.model_id, connector,
                                      round(start - arrival, WAIT_DECIMALS))
        session = ChargingSession(session_id.encode(), encoder, trajectory, self.start_ms + round(start * 1000),
                                  duration_ms, self._interval_ms, end_reason)
        session.started(self._records.append)
        self.counts["session_started"] += 1
        self._active[session_no] = session

        yield Timeout(env, duration_ms / 1000.0)
        del self._active[session_no]
        progress, energy = session.ended(self._records.append)
        self.counts["charging_progress"] += progress
        self.counts["session_ended"] += 1
        self.sessions_completed += 1
        self.energy_kwh += energy
        res.release(request)
        heapq.heappush(self._free_chargers[station_index], charger)
        self._idle.append(vehicle_index)

    # -- driving -----------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.env.now

    @property
    def finished(self) -> bool:
        return self.env.peek() == math.inf

    @property
    def events_total(self) -> int:
        return sum(self.counts.values())

    def advance(self, until_s: float) -> list[Record]:
        """Run up to simulated second `until_s` (inclusive) and return the records emitted.

        Within one call, plug-ins and unplugs come in time order and the sessions still charging
        then add their progress up to `until_s`; each session's own events are always in order.
        The same sequence of `until_s` values gives the same records in the same order."""
        peek, step = self.env.peek, self.env.step
        while peek() <= until_s:
            step()
        emit, until_ms = self._records.append, self.start_ms + math.floor(until_s * 1000)
        progress = 0
        for session in self._active.values():
            progress += session.progress_until(until_ms, emit)
        self.counts["charging_progress"] += progress
        records = self._records.copy()
        self._records.clear()
        return records

    def sim_time(self, t_s: float) -> str:
        return format_event_time(self.start_ms + round(t_s * 1000))

    def manifest(self, **extra) -> RunManifest:
        """The counts so far, as a manifest (the caller adds wall times and the interrupted flag)."""
        cfg = self.config
        return RunManifest(
            run_id=self.run_id, seed=cfg.seed, sim_started=self.sim_time(0), sim_finished=self.sim_time(self.now),
            counts=dict(self.counts), events_total=self.events_total,
            sessions_started=self.sessions_started, sessions_completed=self.sessions_completed,
            sessions_abandoned=self.sessions_abandoned, arrivals_unserved=self.arrivals_unserved,
            energy_kwh=round(self.energy_kwh, 3),
            parameters={"vehicles": cfg.vehicles, "stations": len(self.stations), "duration_h": cfg.duration_h,
                        "sessions": cfg.sessions, "progress_interval_s": cfg.progress_interval_s,
                        "start": cfg.start.isoformat(), "encoding": cfg.encoding},
            **extra)
