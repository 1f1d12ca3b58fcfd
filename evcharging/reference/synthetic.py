"""Synthetic reference data in the Kaggle files' exact shape, for machines without those files.

The generators return :class:`~evcharging.reference.table.RawTable` records of text — the same
columns and the same value domains as ``../shared/data/SOURCES.md`` describes — so generated data
goes through the same validation and normalisation as a real file, and can be written out as one
(:meth:`RawTable.write_csv`). Output depends only on ``(rows, seed)``.

Stations: 90 % lie in a box about 0.2° wide around one of the 15 cities of the real file, with an
address "NNNN <City> Ave, <City>"; the rest have random coordinates anywhere on the globe and an
address "NNNN Random Rd, City NN, Country". Charger type, capacity and connectors are drawn
independently, as in the real file, so capped rows ("AC Level 1, 350 kW") and connectors that do
not fit the charger ("AC Level 2, CCS") occur.

Vehicles: names built from real makes and models (so the connector rules apply as they would on
the real file), repeated names included; about 14 % have no price and 1 % no fast-charge figure.
"""

from __future__ import annotations

import random

from evcharging.reference.stations import (
    CHARGER_POWER_CAPS_KW,
    KAGGLE_CONNECTOR_TYPES,
    MAINTENANCE_FREQUENCIES,
    STATION_COLUMNS,
)
from evcharging.reference.table import RawTable
from evcharging.reference.vehicles import VEHICLE_COLUMNS

DEFAULT_STATION_ROWS = 5000
DEFAULT_VEHICLE_ROWS = 360

# City -> (south latitude, west longitude, box height, box width), measured on the real file.
CITY_BOXES = {
    "San Francisco": (37.7, -122.5, 0.2, 0.2), "Mexico City": (19.4, -99.2, 0.2, 0.2),
    "Beijing": (39.8, 116.2, 0.2, 0.3), "Mumbai": (18.9, 72.8, 0.3, 0.2),
    "Bangkok": (13.7, 100.4, 0.2, 0.2), "Cape Town": (-33.9, 18.4, 0.2, 0.2),
    "Chicago": (41.8, -87.8, 0.2, 0.2), "Seoul": (37.5, 126.9, 0.2, 0.2),
    "Dubai": (25.2, 55.2, 0.2, 0.2), "Sydney": (-33.9, 151.2, 0.2, 0.2),
    "Berlin": (52.4, 13.3, 0.2, 0.2), "Los Angeles": (34.0, -118.4, 0.2, 0.2),
    "Moscow": (55.7, 37.5, 0.2, 0.2), "São Paulo": (-23.7, -46.7, 0.2, 0.2),
    "Toronto": (43.6, -79.5, 0.2, 0.2),
}  # fmt: skip
OPERATORS = ("Tesla", "ChargePoint", "EVgo", "Greenlots", "Ionity")
AVAILABILITIES = ("24/7", "6:00-22:00", "9:00-18:00")
CAPACITIES_KW = (22, 50, 150, 350)

MODELS = (
    "Tesla Model 3", "Tesla Model Y", "Tesla Model S", "Nissan Leaf", "Nissan Ariya", "Nissan e-NV200",
    "Volkswagen ID.3", "Volkswagen ID.4", "Hyundai IONIQ 5", "Kia EV6", "BMW i4", "Renault Zoe",
    "MG MG4 Electric", "BYD ATTO 3", "Polestar 2", "Skoda Enyaq iV", "Mercedes EQA", "Fiat 500e",
)  # fmt: skip
VARIANTS = ("", " Long Range", " Performance", " Standard Range", " Dual Motor", " 4MATIC")


def synthetic_stations(rows: int = DEFAULT_STATION_ROWS, seed: int = 0) -> RawTable:
    rng = random.Random(f"stations/{seed}")
    records = []
    for n in range(1, rows + 1):
        if rng.random() < 0.9:
            city = rng.choice(list(CITY_BOXES))
            south, west, height, width = CITY_BOXES[city]
            lat, lon = south + rng.random() * height, west + rng.random() * width
            address = f"{rng.randint(1000, 9999)} {city} Ave, {city}"
        else:
            lat, lon = rng.uniform(-90, 90), rng.uniform(-180, 180)
            address = f"{rng.randint(1000, 9999)} Random Rd, City {rng.randint(1, 500)}, Country"
        records.append([
            f"EVS{n:05d}", f"{lat:.6f}", f"{lon:.6f}", address, rng.choice(list(CHARGER_POWER_CAPS_KW)),
            f"{rng.uniform(0.10, 0.50):.2f}", rng.choice(AVAILABILITIES), f"{rng.uniform(0.5, 20.0):.2f}",
            str(rng.randint(10, 100)), rng.choice(OPERATORS), str(rng.choice(CAPACITIES_KW)),
            ", ".join(rng.sample(KAGGLE_CONNECTOR_TYPES, rng.randint(1, 2))), str(rng.randint(2010, 2023)),
            rng.choice(("Yes", "No")), f"{rng.uniform(3.0, 5.0):.1f}", str(rng.randint(1, 10)),
            rng.choice(MAINTENANCE_FREQUENCIES),
        ])  # fmt: skip
    return RawTable.from_rows(f"synthetic, seed {seed}", STATION_COLUMNS, records)


def synthetic_vehicles(rows: int = DEFAULT_VEHICLE_ROWS, seed: int = 0) -> RawTable:
    rng = random.Random(f"vehicles/{seed}")
    records = []
    for n in range(rows):
        name = rng.choice(MODELS) + rng.choice(VARIANTS)
        battery = rng.uniform(21.3, 123.0)
        efficiency = rng.randint(137, 295)
        range_km = min(685, max(135, round(battery * 1000 / efficiency)))
        records.append([
            f"{battery:.1f}", name, f"https://ev-database.org/car/{1000 + n}/{name.replace(' ', '-')}",
            str(efficiency), "NA" if rng.random() < 0.01 else str(rng.randrange(170, 1291, 10)),
            "NA" if rng.random() < 0.14 else str(rng.randint(22550, 218000)), str(range_km),
            str(rng.randint(125, 320)), f"{rng.uniform(2.1, 19.1):.1f}",
        ])  # fmt: skip
    return RawTable.from_rows(f"synthetic, seed {seed}", VEHICLE_COLUMNS, records)
