"""`evcharging-sim` / `python -m simulator`: run the charging simulation into Kafka, a file or nowhere.

Connection settings come from the environment (EVCHARGING_MONGO_URL, EVCHARGING_MONGO_DATABASE,
EVCHARGING_KAFKA_BOOTSTRAP_SERVERS, EVCHARGING_KAFKA_EVENTS_TOPIC, EVCHARGING_KAFKA_MANIFESTS_TOPIC);
everything about the run itself is an option.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime

from simulator.avro import DEFAULT_KAFKA_ENCODING
from simulator.events import RunManifest
from simulator.reference import ReferenceDataError, from_documents, load_from_mongodb
from simulator.runner import run
from simulator.sink import FileSink, KafkaSink, NullSink, Sink, write_manifest
from simulator.synthetic import synthetic_documents
from simulator.world import DEFAULT_START, World, WorldConfig

ENV_DEFAULTS = {
    "EVCHARGING_MONGO_URL": "mongodb://127.0.0.1:27017/",
    "EVCHARGING_MONGO_DATABASE": "evcharging",
    "EVCHARGING_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "EVCHARGING_KAFKA_EVENTS_TOPIC": "ev-charging-events",
    "EVCHARGING_KAFKA_MANIFESTS_TOPIC": "ev-run-manifests",
}


def setting(name: str) -> str:
    return os.environ.get(name) or ENV_DEFAULTS[name]


def _start(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evcharging-sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=("mongodb", "synthetic"), default="mongodb",
                   help="reference data: the MongoDB collections, or a small built-in set (default: mongodb)")
    p.add_argument("--vehicles", type=int, default=1000, help="fleet size (default: 1000)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--stations", type=int, help="use the first N stations by id (default: all; "
                       "with --source synthetic, how many to make, default 60)")
    where.add_argument("--region", help="use only the stations of this city")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, help="hours of arrivals to simulate (default: 24)")
    length.add_argument("--sessions", type=int, help="stop arrivals once this many sessions started")
    p.add_argument("--seed", type=int, default=1, help="random seed; same seed, same events (default: 1)")
    p.add_argument("--start", type=_start, default=DEFAULT_START,
                   help=f"simulated start, ISO-8601 UTC (default: {DEFAULT_START.isoformat()})")
    p.add_argument("--speed", type=float, default=0.0,
                   help="0 = as fast as possible, else real time x SPEED (default: 0)")
    p.add_argument("--fast-forward", type=float, default=0.0, metavar="HOURS",
                   help="with --speed: emit the first HOURS of the simulation as fast as possible, then pace "
                        "(a day already under way; they count in --duration) (default: 0)")
    p.add_argument("--progress-interval", type=float, default=60.0, metavar="S",
                   help="simulated seconds between charging_progress events (default: 60)")
    p.add_argument("--charges-per-day", type=float, default=1.0,
                   help="mean charging visits per vehicle per day (default: 1)")
    p.add_argument("--sink", choices=("kafka", "file", "null"), default="kafka", help="default: kafka")
    p.add_argument("--encoding", choices=("json", "avro"),
                   help="of the events: Avro in Confluent's wire format (simulator/avro.py), or JSON; the "
                        f"stream reads both, even on one topic (default: {DEFAULT_KAFKA_ENCODING}; "
                        "--sink file writes JSON lines)")
    p.add_argument("--out", help="JSON-lines output file for --sink file")
    p.add_argument("--manifest", help="also write the run manifest here (file sink default: OUT.manifest.json)")
    p.add_argument("--run-id", help="run id (default: derived from the seed and settings)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def make_sink(args: argparse.Namespace) -> Sink:
    if args.sink == "file":
        return FileSink(args.out, args.manifest)
    if args.sink == "null":
        return NullSink()
    return KafkaSink(setting("EVCHARGING_KAFKA_BOOTSTRAP_SERVERS"), setting("EVCHARGING_KAFKA_EVENTS_TOPIC"),
                     setting("EVCHARGING_KAFKA_MANIFESTS_TOPIC"))


async def load_reference(args: argparse.Namespace):
    if args.source == "synthetic":
        stations, vehicles = synthetic_documents(stations=args.stations or 60)
        return from_documents(stations, vehicles, region=args.region)
    return await load_from_mongodb(setting("EVCHARGING_MONGO_URL"), setting("EVCHARGING_MONGO_DATABASE"),
                                   region=args.region, limit=args.stations)


async def main_async(args: argparse.Namespace, on_step=None) -> RunManifest:
    """Run the simulation; ``on_step(world, records)``, if given, replaces the progress bar (Dagster Pipes)."""
    stations, vehicles = await load_reference(args)
    config = WorldConfig(seed=args.seed, run_id=args.run_id, vehicles=args.vehicles,
                         duration_h=None if args.sessions else (args.duration or 24.0),
                         sessions=args.sessions, progress_interval_s=args.progress_interval,
                         start=args.start, charges_per_vehicle_per_day=args.charges_per_day,
                         encoding=args.encoding)
    world = World(stations, vehicles, config)
    sink = make_sink(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def request_stop() -> None:
        stop.set()  # finish the step, flush, publish the manifest
        for sig in signals:  # a second Ctrl-C interrupts at once
            loop.remove_signal_handler(sig)

    for sig in signals:
        loop.add_signal_handler(sig, request_stop)
    progress = None if args.quiet else _Progress(world)
    clock0 = time.monotonic()
    try:
        manifest = await run(world, sink, speed=args.speed, fast_forward_s=args.fast_forward * 3600, stop=stop,
                             on_step=on_step or (progress.update if progress else None))
    finally:
        if progress:
            progress.close()
    if args.manifest and args.sink != "file":
        write_manifest(manifest, args.manifest)
    if not args.quiet:
        _summary(manifest, time.monotonic() - clock0)
    return manifest


class _Progress:
    """A rich progress bar on stderr, over sessions (--sessions) or simulated hours (--duration)."""

    def __init__(self, world: World) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        cfg = world.config
        self._by_sessions = cfg.sessions is not None
        total = cfg.sessions if self._by_sessions else cfg.duration_h * 3600
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=False)
        self._progress.start()
        self._task = self._progress.add_task(f"run {world.run_id}", total=total, status="")
        self._last = 0.0

    def update(self, world: World, _: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        done = world.sessions_started if self._by_sessions else world.now
        self._progress.update(self._task, completed=done, status=(
            f"{world.sessions_started:,} sessions, {world.events_total:,} events, sim {world.sim_time(world.now)}"))

    def close(self) -> None:
        self._progress.stop()


def _summary(manifest: RunManifest, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run {manifest.run_id}{' (interrupted)' if manifest.interrupted else ''}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, count in manifest.counts.items():
        table.add_row(f"events {name}", f"{count:,}")
    rows = [("events total", f"{manifest.events_total:,}"),
            ("sessions started", f"{manifest.sessions_started:,}"),
            ("sessions completed", f"{manifest.sessions_completed:,}"),
            ("vehicles gave up queueing", f"{manifest.sessions_abandoned:,}"),
            ("arrivals with no station", f"{manifest.arrivals_unserved:,}"),
            ("energy delivered kWh", f"{manifest.energy_kwh:,.1f}"),
            ("simulated", f"{manifest.sim_started} .. {manifest.sim_finished}"),
            ("wall seconds", f"{seconds:,.1f}"),
            ("events/s", f"{manifest.events_total / seconds:,.0f}" if seconds else "-")]
    for row in rows:
        table.add_row(*row)
    Console(stderr=True).print(table)


def main(argv: list[str] | None = None, on_step=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sink == "file" and not args.out:
        parser.error("--sink file needs --out PATH")
    if args.sink == "file" and args.encoding not in (None, "json"):
        parser.error("--sink file writes JSON lines: use --encoding json")
    args.encoding = args.encoding or ("json" if args.sink == "file" else DEFAULT_KAFKA_ENCODING)
    try:
        manifest = asyncio.run(main_async(args, on_step))
    except (ReferenceDataError, ConnectionError, ValueError) as exc:
        print(f"evcharging-sim: {exc}", file=sys.stderr)
        return 2
    return 130 if manifest.interrupted else 0
