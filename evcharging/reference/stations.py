"""Charging stations: the Kaggle "Global EV Charging Stations" format and its MongoDB documents.

The file has 17 columns (see ``../shared/data/SOURCES.md``); :data:`STATIONS_FORMAT` checks each
one. A valid row becomes one document in the ``stations`` collection, keyed by its station id::

    {_id: "EVS00001", station_id, latitude, longitude,
     location: {type: "Point", coordinates: [lon, lat]},      # GeoJSON order: longitude first
     address, city, charger_type, capacity_kw, power_kw, cost_usd_per_kwh,
     opening_hours, open_minute, close_minute, connector_types: [str], operator,
     distance_to_city_km, usage_avg_users_per_day, installation_year,
     renewable_energy: bool, rating, parking_spots: int, maintenance_frequency}

Normalisation rules, for values that are legal but do not agree with each other:

- **Charger power.** The file's capacity is independent of the charger type, so rows such as
  "AC Level 1, 350 kW" exist. Such a charger cannot deliver more than its type allows, so
  ``power_kw = min(capacity_kw, cap(charger_type))`` with the caps AC Level 1 = 1.9 kW (a
  120 V / 16 A outlet), AC Level 2 = 22 kW (three-phase 32 A) and DC Fast Charger = the listed
  capacity. The row is kept and the raw ``capacity_kw`` stays in the document;
  :attr:`Normalised.counts` reports how many stations were capped.
- **City.** The address's last comma-separated part ("8970 San Francisco Ave, San Francisco"),
  except for three-part addresses ("4826 Random Rd, City 98, Country"), whose middle part is the
  city and whose last part is the country.
- **Opening hours.** "24/7" opens at minute 0 and closes at minute 1440; "H:MM-H:MM" gives the
  minutes after midnight of each end (``open_minute`` < ``close_minute``).
- **Connector types.** "CCS, CHAdeMO" becomes ``["CCS", "CHAdeMO"]`` (split on commas, stripped).
  The file lists connectors independently of the charger type too, so rows such as "AC Level 2,
  CCS" or "DC Fast Charger, Type 2" exist. A charger delivers one current, and only connectors
  that carry it can serve a car (:mod:`simulator.connectors`: Type 1 and Type 2 carry AC; CCS,
  CHAdeMO and GB/T carry DC; Tesla/NACS carries both). The other listed connectors are dropped
  (counted as ``connectors_dropped``); a station left with none gets the default connector of its
  current, Type 2 for AC and CCS for DC (counted as ``connector_defaulted``). The file's own
  names are CCS, CHAdeMO, Tesla and Type 2; Type 1, GB/T and NACS are accepted as well.
- **Renewable energy.** "Yes"/"No" becomes ``True``/``False``.
"""

from __future__ import annotations

import re
from datetime import date

import pandas as pd
import pandera.pandas as pa

from evcharging.reference.table import Normalised, TableFormat
from simulator.connectors import CONNECTORS, DEFAULT_CONNECTOR, carries

STATION_COLUMNS = (
    "Station ID", "Latitude", "Longitude", "Address", "Charger Type", "Cost (USD/kWh)",
    "Availability", "Distance to City (km)", "Usage Stats (avg users/day)", "Station Operator",
    "Charging Capacity (kW)", "Connector Types", "Installation Year", "Renewable Energy Source",
    "Reviews (Rating)", "Parking Spots", "Maintenance Frequency",
)  # fmt: skip

# Upper bound of what each charger type can deliver; None = the listed capacity.
CHARGER_POWER_CAPS_KW: dict[str, float | None] = {"AC Level 1": 1.9, "AC Level 2": 22.0, "DC Fast Charger": None}
DC_CHARGER_TYPE = "DC Fast Charger"
KAGGLE_CONNECTOR_TYPES = ("CCS", "CHAdeMO", "Tesla", "Type 2")  # the names the Kaggle file uses
CONNECTOR_TYPES = tuple(CONNECTORS)  # every name the connector table knows
MAINTENANCE_FREQUENCIES = ("Monthly", "Quarterly", "Annually")
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def opening_minutes(hours: str) -> tuple[int, int] | None:
    """(open, close) in minutes after midnight for "24/7" or "H:MM-H:MM"; None if malformed."""
    if hours == "24/7":
        return 0, 1440
    match = _HOURS.match(hours)
    if not match:
        return None
    oh, om, ch, cm = map(int, match.groups())
    opening, closing = oh * 60 + om, ch * 60 + cm
    return (opening, closing) if om < 60 and cm < 60 and 0 <= opening < closing <= 1440 else None


def connector_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def city_of(address: str) -> str:
    parts = [part.strip() for part in address.split(",")]
    return parts[-2] if len(parts) >= 3 else parts[-1]


def charger_power_kw(charger_type: str, capacity_kw: float) -> float:
    cap = CHARGER_POWER_CAPS_KW[charger_type]
    return capacity_kw if cap is None else min(capacity_kw, cap)


def charger_connectors(charger_type: str, listed: list[str]) -> tuple[list[str], dict[str, bool]]:
    """The connectors a charger of this type can serve cars through (see the module docstring),
    and which normalisation rules that took: ``connectors_dropped``, ``connector_defaulted``."""
    dc = charger_type == DC_CHARGER_TYPE
    fitting = [c for c in listed if carries(c, dc)]
    return fitting or [DEFAULT_CONNECTOR[dc]], {
        "connectors_dropped": len(fitting) < len(listed),
        "connector_defaulted": not fitting,
    }


def _between(low: float, high: float, unit: str = "") -> pa.Check:
    return pa.Check.in_range(low, high, error=f"is outside {low:g}..{high:g}{unit}")


def _one_of(values) -> pa.Check:
    return pa.Check.isin(list(values), error=f"is not one of {', '.join(values)}")


STATIONS_FORMAT = TableFormat(
    name="stations",
    schema=pa.DataFrameSchema(
        {
            "Station ID": pa.Column(
                str,
                pa.Check.str_matches(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", error="is not an id (letters, digits, - and _)"),
                unique=True,
                report_duplicates="exclude_first",
            ),
            "Latitude": pa.Column(float, _between(-90, 90), coerce=True),
            "Longitude": pa.Column(float, _between(-180, 180), coerce=True),
            "Address": pa.Column(str),
            "Charger Type": pa.Column(str, _one_of(CHARGER_POWER_CAPS_KW)),
            "Cost (USD/kWh)": pa.Column(float, _between(0, 10, " USD/kWh"), coerce=True),
            "Availability": pa.Column(
                str,
                pa.Check(lambda v: opening_minutes(v) is not None, element_wise=True,
                         error="is not 24/7 or H:MM-H:MM with opening before closing"),
            ),
            "Distance to City (km)": pa.Column(float, _between(0, 20_000, " km"), coerce=True),
            "Usage Stats (avg users/day)": pa.Column(int, _between(0, 100_000), coerce=True),
            "Station Operator": pa.Column(str),
            "Charging Capacity (kW)": pa.Column(float, pa.Check.in_range(0, 1000, include_min=False,
                                                                         error="is outside 0..1000 kW (exclusive of 0)"), coerce=True),
            "Connector Types": pa.Column(
                str,
                pa.Check(lambda v: all(c in CONNECTOR_TYPES for c in connector_list(v)), element_wise=True,
                         error=f"holds a connector type other than {', '.join(CONNECTOR_TYPES)}"),
            ),
            "Installation Year": pa.Column(int, _between(1990, date.today().year), coerce=True),
            "Renewable Energy Source": pa.Column(str, _one_of(("Yes", "No"))),
            "Reviews (Rating)": pa.Column(float, _between(0, 5), coerce=True),
            "Parking Spots": pa.Column(int, _between(1, 1000), coerce=True),
            "Maintenance Frequency": pa.Column(str, _one_of(MAINTENANCE_FREQUENCIES)),
        },
    ),
)


def station_documents(frame: pd.DataFrame) -> Normalised:
    """The ``stations`` documents of a validated frame (see the module docstring for the rules)."""
    documents = []
    counts = dict.fromkeys(("power_capped", "connectors_dropped", "connector_defaulted"), 0)
    for row in frame.itertuples(index=False, name=None):
        r = dict(zip(frame.columns, row, strict=True))
        capacity = float(r["Charging Capacity (kW)"])
        power = charger_power_kw(r["Charger Type"], capacity)
        counts["power_capped"] += power < capacity
        connectors, rules = charger_connectors(r["Charger Type"], connector_list(r["Connector Types"]))
        for rule, took in rules.items():
            counts[rule] += took
        opening, closing = opening_minutes(r["Availability"])
        lat, lon = float(r["Latitude"]), float(r["Longitude"])
        documents.append({
            "_id": r["Station ID"],
            "station_id": r["Station ID"],
            "latitude": lat,
            "longitude": lon,
            "location": {"type": "Point", "coordinates": [lon, lat]},
            "address": r["Address"],
            "city": city_of(r["Address"]),
            "charger_type": r["Charger Type"],
            "capacity_kw": capacity,
            "power_kw": power,
            "cost_usd_per_kwh": float(r["Cost (USD/kWh)"]),
            "opening_hours": r["Availability"],
            "open_minute": opening,
            "close_minute": closing,
            "connector_types": connectors,
            "operator": r["Station Operator"],
            "distance_to_city_km": float(r["Distance to City (km)"]),
            "usage_avg_users_per_day": int(r["Usage Stats (avg users/day)"]),
            "installation_year": int(r["Installation Year"]),
            "renewable_energy": r["Renewable Energy Source"] == "Yes",
            "rating": float(r["Reviews (Rating)"]),
            "parking_spots": int(r["Parking Spots"]),
            "maintenance_frequency": r["Maintenance Frequency"],
        })  # fmt: skip
    return Normalised(documents, {rule: int(n) for rule, n in counts.items()})
