"""The simulator under Pipes: progress lines at a wall-clock pace, the manifest as flat metadata,
and the asset's command line and environment built from its config and resources."""

from __future__ import annotations

from evcharging.defs.stream.assets import SimulationConfig, seed_for_run, simulator_args, simulator_env
from evcharging.resources.kafka import KafkaResource
from evcharging.resources.mongo import MongoResource
from evcharging.simulation import PipesProgress, manifest_metadata
from simulator.events import RunManifest


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, line):
        self.lines.append(line)


class _World:
    def __init__(self, events, sessions):
        self.events_total, self.sessions_started, self.now = events, sessions, 0.0

    def sim_time(self, _):
        return "2026-01-05T07:00:00Z"


def test_progress_is_logged_at_the_first_step_then_every_few_seconds():
    log, now = _Log(), [0.0]
    progress = PipesProgress(log, every_s=5, clock=lambda: now[0])
    for t, events in [(1, 100), (2, 200), (5, 1000), (6, 1100), (10, 2000)]:
        now[0] = t
        progress(_World(events, events // 10), 0)
    assert len(log.lines) == 2
    assert "100 events (100 events/s)" in log.lines[0] and "1,100 events (200 events/s)" in log.lines[1]


def test_manifest_becomes_flat_metadata():
    manifest = RunManifest(run_id="r-1", seed=7, counts={"session_started": 3, "session_ended": 2},
                           events_total=5, sessions_started=3, sessions_completed=2, energy_kwh=41.23456)
    meta = manifest_metadata(manifest)
    assert meta["run_id"] == "r-1" and meta["events_total"] == 5 and meta["events_session_ended"] == 2
    assert meta["energy_kwh"] == 41.235 and meta["interrupted"] is False
    assert all(isinstance(v, (str, int, float, bool)) for v in meta.values())


def test_command_line_and_environment_come_from_config_and_resources():
    args = simulator_args(SimulationConfig(vehicles=50, hours=0.5, speed=0), seed=42)
    assert args[args.index("--vehicles") + 1] == "50" and args[args.index("--seed") + 1] == "42"
    assert args[args.index("--sink") + 1] == "kafka" and args[args.index("--encoding") + 1] == "avro"  # the default
    json = simulator_args(SimulationConfig(encoding="json"), seed=42)
    assert json[json.index("--encoding") + 1] == "json"
    env = simulator_env(KafkaResource(bootstrap_servers="k:1", events_topic="t"), MongoResource(url="mongodb://m/", database="d"))
    assert env["EVCHARGING_KAFKA_BOOTSTRAP_SERVERS"] == "k:1" and env["EVCHARGING_KAFKA_EVENTS_TOPIC"] == "t"
    assert env["EVCHARGING_MONGO_URL"] == "mongodb://m/" and env["EVCHARGING_MONGO_DATABASE"] == "d"


def test_each_dagster_run_gets_its_own_reproducible_seed():
    a, b = "8f14e45f-ceea-467a-9af0-2c6d5b7e1a00", "c9f0f895-fb98-4b9a-8b1c-3d2e4f5a6b7c"
    assert seed_for_run(a) == seed_for_run(a) != seed_for_run(b)
