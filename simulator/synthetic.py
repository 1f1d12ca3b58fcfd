"""A small deterministic reference set, shaped like the MongoDB documents, for runs without MongoDB.

`--source synthetic`, the tests and the benchmarks use it; it goes through the same
`reference.from_documents` as the real collections, so both paths share one conversion.
"""

from __future__ import annotations

import random
from typing import Any

from simulator.model import DC_CHARGER_TYPE, dc_max_kw

_CITIES = {  # a few of the reference data's cities: name -> (lat, lon)
    "Berlin": (52.52, 13.405), "Toronto": (43.651, -79.347), "Sydney": (-33.869, 151.209),
    "Seoul": (37.566, 126.978), "Chicago": (41.878, -87.63),
}
_HOURS = {"24/7": (0, 1440), "6:00-22:00": (360, 1320), "9:00-18:00": (540, 1080)}
_POWER_BY_TYPE = {"AC Level 1": (1.9, 1.9), "AC Level 2": (7.4, 22.0), "DC Fast Charger": (50.0, 350.0)}
_VEHICLES = [  # name, battery kWh, Wh/km, fast charge km/h (None: no DC), on-board charger kW
    ("Tesla Model 3 Long Range", 70.0, 153, 910, 11.0), ("Volkswagen ID.3 Pro", 58.0, 171, 540, 11.0),
    ("Renault Zoe ZE50 R110", 52.0, 165, 230, 22.0), ("Hyundai Kona Electric 64 kWh", 64.0, 154, 370, 11.0),
    ("Renault Twingo Electric", 21.3, 164, None, 22.0), ("Porsche Taycan 4S", 83.7, 197, 1010, 11.0),
    ("Nissan Leaf", 36.0, 164, 230, 6.6), ("BMW iX3", 74.0, 185, 560, 11.0),
]
# Each charger offers only connectors that carry its current (see simulator.connectors).
_CONNECTORS = {False: ("Type 2", "Tesla"), True: ("CCS", "CHAdeMO", "Tesla")}


def slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def synthetic_documents(stations: int = 60, seed: int = 7) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`stations` station documents spread over a few cities, and the vehicle documents."""
    rng = random.Random(seed)
    station_docs = []
    cities = list(_CITIES)
    for i in range(1, stations + 1):
        city = cities[i % len(cities)]
        lat0, lon0 = _CITIES[city]
        lat, lon = lat0 + rng.uniform(-0.1, 0.1), lon0 + rng.uniform(-0.1, 0.1)
        charger_type = rng.choice(list(_POWER_BY_TYPE))
        hours = rng.choice(list(_HOURS))
        connectors = rng.sample(_CONNECTORS[charger_type == DC_CHARGER_TYPE], rng.choice((1, 2)))
        station_id = f"EVS{i:05d}"
        station_docs.append({
            "_id": station_id, "station_id": station_id, "latitude": lat, "longitude": lon,
            "location": {"type": "Point", "coordinates": [lon, lat]},
            "address": f"{i} Synthetic Ave, {city}", "city": city, "charger_type": charger_type,
            "capacity_kw": 350, "power_kw": rng.choice(_POWER_BY_TYPE[charger_type]),
            "cost_usd_per_kwh": round(rng.uniform(0.1, 0.5), 2), "opening_hours": hours,
            "open_minute": _HOURS[hours][0], "close_minute": _HOURS[hours][1],
            "connector_types": connectors, "operator": "Synthetic", "parking_spots": rng.randint(1, 4),
        })
    vehicle_docs = []
    for name, battery, efficiency, fast, on_board_kw in _VEHICLES:
        dc = dc_max_kw(fast, efficiency)
        vehicle_docs.append({
            "_id": slug(name), "name": name, "battery_kwh": battery, "efficiency_wh_per_km": efficiency,
            "fast_charge_km_per_h": fast, "dc_max_kw": dc, "ac_max_kw": on_board_kw,
            "connector_types": ["Type 2", "CCS"] if dc else ["Type 2"],
            "range_km": round(battery * 1000 / efficiency),
        })
    return station_docs, vehicle_docs
