"""Simulated charging sessions against published real-world statistics, per site type.

Runs one simulated day (no services needed) over the synthetic stations and over the Kaggle
stations, and prints each published figure (simulator/fidelity.py, sources in simulator/FIDELITY.md)
beside the same statistic of the simulated sessions of its site type, with the ratio; then the
simulated arrival-hour profile per site type. Writes bench/results/fidelity.json.

    python bench/bench_fidelity.py                      # 2,000 vehicles, 24 h, both station sets
    python bench/bench_fidelity.py --source kaggle --vehicles 5000 --seed 3

The Kaggle files come from EVCHARGING_STATIONS_CSV / EVCHARGING_VEHICLES_CSV (or --stations-csv /
--vehicles-csv), else ../shared/data next to the project.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
# pandera imports pyspark, which warns about pandas 3 at import (the project only hands it Arrow tables).
warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)

from evcharging.reference.datasets import STATIONS, VEHICLES  # noqa: E402
from simulator.fidelity import (  # noqa: E402
    SessionSummary, arrival_shares, compare, session_summaries, site_profile,
)
from simulator.reference import from_documents  # noqa: E402
from simulator.sites import SITE_TYPES  # noqa: E402
from simulator.synthetic import synthetic_documents  # noqa: E402
from simulator.world import World, WorldConfig  # noqa: E402

STEP_S = 900.0  # simulated seconds per advance; only the output, not its order, matters here


def reference(source: str, args: argparse.Namespace):
    """(stations, vehicles) for `source`, or None when the Kaggle files are not there."""
    if source == "synthetic":
        return from_documents(*synthetic_documents(stations=args.synthetic_stations))
    paths = (Path(args.stations_csv), Path(args.vehicles_csv))
    if not all(p.is_file() for p in paths):
        print(f"kaggle: skipped, {paths[0]} or {paths[1]} not found (set EVCHARGING_STATIONS_CSV / "
              "EVCHARGING_VEHICLES_CSV)")
        return None
    return from_documents(STATIONS.prepare(paths[0]).documents, VEHICLES.prepare(paths[1]).documents)


def simulate(stations, vehicles, args: argparse.Namespace) -> tuple[World, list[SessionSummary], float]:
    world = World(stations, vehicles, WorldConfig(seed=args.seed, vehicles=args.vehicles, duration_h=args.duration))
    started, records, until = time.monotonic(), [], 0.0
    while not world.finished:
        until += STEP_S
        records += world.advance(until)
    return world, session_summaries(records, world), time.monotonic() - started


def print_comparison(source: str, rows) -> None:
    print(f"\n{source}: simulated vs published, per site type (ratio = simulated / published)")
    print(f"{'site':<10} {'measure':<13} {'stat':<6} {'sessions':>8} {'simulated':>10} {'published':>10} "
          f"{'ratio':>6}  within 1.5x  ref")
    notes: dict[str, int] = {}
    for row in rows:
        p = row.published
        ref = notes.setdefault(f"{p.source}{f' -- {p.caveat}' if p.caveat else ''}", len(notes) + 1)
        published = f"{p.low:g}-{p.high:g}" if p.low is not None else f"{p.value:g}"
        simulated = "-" if row.simulated is None else f"{row.simulated:.1f}"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        print(f"{p.site:<10} {p.measure:<13} {p.statistic:<6} {row.sessions:>8,} {simulated:>10} {published:>10} "
              f"{ratio:>6}  {'yes' if row.within else 'NO':<11}  [{ref}]{' (context)' if p.caveat else ''}")
    for note, ref in notes.items():
        print(f"  [{ref}] {note}")


def print_profile(profile: dict[str, dict[str, float]]) -> None:
    print("simulated, per site type:")
    for site, p in profile.items():
        print(f"  {site:<10} {p['sessions']:>6,} sessions  median {p['median_duration_min']:6.1f} min "
              f"{p['median_energy_kwh']:5.1f} kWh  average power {p['average_power_kw']:5.1f} kW")


def print_arrivals(shares: dict[str, list[float]]) -> None:
    print("share of each site type's sessions plugging in per hour (UTC = every site's local time):")
    print("hour      " + " ".join(f"{h:>3}" for h in range(24)))
    for site in SITE_TYPES:
        print(f"{site:<9} " + " ".join(f"{round(100 * s):>3}" for s in shares[site]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=("both", "synthetic", "kaggle"), default="both")
    p.add_argument("--vehicles", type=int, default=2000)
    p.add_argument("--duration", type=float, default=24.0, help="hours of arrivals (default: 24)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--synthetic-stations", type=int, default=60)
    p.add_argument("--stations-csv", default=os.environ.get("EVCHARGING_STATIONS_CSV")
                   or PROJECT.parent / "shared" / "data" / "charging_stations.csv")
    p.add_argument("--vehicles-csv", default=os.environ.get("EVCHARGING_VEHICLES_CSV")
                   or PROJECT.parent / "shared" / "data" / "electric_vehicles_2021.csv")
    args = p.parse_args(argv)
    results = {"vehicles": args.vehicles, "duration_h": args.duration, "seed": args.seed, "runs": {}}
    for source in ("synthetic", "kaggle") if args.source == "both" else (args.source,):
        loaded = reference(source, args)
        if loaded is None:
            continue
        world, summaries, seconds = simulate(*loaded, args)
        rows, shares, profile = compare(summaries), arrival_shares(summaries), site_profile(summaries)
        print_comparison(source, rows)
        print(f"({len(loaded[0]):,} stations, {world.sessions_completed:,} sessions, {seconds:.1f} s)")
        print_profile(profile)
        print_arrivals(shares)
        results["runs"][source] = {
            "stations": len(loaded[0]), "sessions": world.sessions_completed, "seconds": round(seconds, 2),
            "comparison": [asdict(r.published) | {"sessions": r.sessions, "simulated": r.simulated,
                                                  "ratio": r.ratio, "within_1_5x": r.within} for r in rows],
            "site_profile": profile, "arrival_shares": shares,
        }
    out = PROJECT / "bench" / "results" / "fidelity.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
