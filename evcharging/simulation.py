"""`python -m evcharging.simulation [simulator options]`: the simulator, reporting to Dagster Pipes.

The Kafka topic asset (``evcharging/defs/stream/assets.py``) launches this as its own process
(``PipesSubprocessClient``) or container (``PipesDockerClient``). It runs ``simulator.cli`` with
the options given, sends a progress line to the Dagster run's log every few seconds, and reports
the run's manifest (events per type, sessions, energy, run id) as the materialization's metadata.
The standalone ``evcharging-sim`` is untouched by this: it is the same CLI without Pipes.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from simulator.events import RunManifest

PROGRESS_EVERY_S = 5.0


class PipesProgress:
    """The simulator's ``on_step``: a log line at the first step, then every ``every_s`` wall seconds."""

    def __init__(self, log, every_s: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.log, self.every_s, self.clock = log, every_s, clock
        self._since, self._logged, self._events = clock(), False, 0

    def __call__(self, world, records: int) -> None:
        now = self.clock()
        if self._logged and now - self._since < self.every_s:
            return
        rate = (world.events_total - self._events) / max(now - self._since, 1e-6)
        self.log.info(f"simulated up to {world.sim_time(world.now)}: {world.sessions_started:,} sessions started, "
                      f"{world.events_total:,} events ({rate:,.0f} events/s)")
        self._since, self._logged, self._events = now, True, world.events_total


def manifest_metadata(manifest: RunManifest) -> dict:
    """The manifest as flat materialization metadata (numbers stay numbers, so the UI can plot them)."""
    return {
        "run_id": manifest.run_id,
        "seed": manifest.seed,
        "events_total": manifest.events_total,
        **{f"events_{kind}": count for kind, count in manifest.counts.items()},
        "sessions_started": manifest.sessions_started,
        "sessions_completed": manifest.sessions_completed,
        "sessions_abandoned": manifest.sessions_abandoned,
        "arrivals_unserved": manifest.arrivals_unserved,
        "energy_kwh": round(float(manifest.energy_kwh), 3),
        "simulated_from": str(manifest.sim_started),
        "simulated_to": str(manifest.sim_finished),
        "interrupted": manifest.interrupted,
    }


def main(argv: list[str] | None = None) -> int:
    from dagster_pipes import open_dagster_pipes

    from simulator import cli

    argv = list(sys.argv[1:] if argv is None else argv)
    with open_dagster_pipes() as pipes, tempfile.TemporaryDirectory() as tmp:
        manifest_file = Path(tmp) / "manifest.json"
        code = cli.main([*argv, "--quiet", "--manifest", str(manifest_file)], on_step=PipesProgress(pipes.log))
        if not manifest_file.exists():  # the simulator said why on stderr (the run's compute log)
            raise RuntimeError(f"the simulator exited with code {code} without a manifest")
        manifest = RunManifest.from_json(manifest_file.read_text())
        pipes.log.info(f"run {manifest.run_id}: {manifest.events_total:,} events, {manifest.sessions_completed:,} "
                       f"sessions completed, {manifest.energy_kwh:,.1f} kWh")
        pipes.report_asset_materialization(metadata=manifest_metadata(manifest))
    return code


if __name__ == "__main__":
    sys.exit(main())
