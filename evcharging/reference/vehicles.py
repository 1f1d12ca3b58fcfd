"""Electric vehicles: the Kaggle "Electric Vehicle Specifications and Prices" format (ev-database.org).

The file has 9 columns and writes ``NA`` for a missing value (``Fast_charge`` twice, ``Price.DE.``
51 times); a missing value stays missing (``None``) in MongoDB. A valid row becomes one document in
the ``vehicles`` collection::

    {_id: slug, name, link, battery_kwh, efficiency_wh_per_km,
     fast_charge_km_per_h, dc_max_kw, ac_max_kw, connector_types: [str],
     price_eur, range_km, top_speed_kmh, acceleration_0_100_s}

All measures are floats; ``fast_charge_km_per_h``, ``dc_max_kw`` and ``price_eur`` may be None.

Rules:

- **Id.** ``_id`` is the slug of ``Car_name``: ASCII, lower case, runs of anything else replaced by
  one dash ("Mercedes EQA 250+" -> ``mercedes-eqa-250``). Nine names occur twice in the file (two
  "Tesla Model Y" …); every row whose slug is shared gets the ev-database id from its
  ``Car_name_link`` appended (``tesla-model-y-1743``), so the id depends only on the file's content,
  not on row order.
- **DC power.** ``Fast_charge`` is kilometres of range added per hour of DC charging, not kW; the
  DC power it implies is ``dc_max_kw = fast_charge_km_per_h * efficiency_wh_per_km / 1000``
  (None when ``Fast_charge`` is NA: the car has no DC charging).
- **AC power.** The dataset has no AC figure; every car gets ``ac_max_kw = 11.0`` (the common
  three-phase 16 A on-board charger).
- **Connectors.** The dataset has none either. Names starting with "Tesla" get
  ``["Tesla", "CCS", "Type 2"]``; Nissan Leaf and e-NV200 get ``["CHAdeMO", "Type 2"]``; every
  other car ``["CCS", "Type 2"]``. A car without DC charging keeps only its AC inlet ``["Type 2"]``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

import pandas as pd
import pandera.pandas as pa

from evcharging.reference.table import Normalised, ReferenceDataError, TableFormat

VEHICLE_COLUMNS = (
    "Battery", "Car_name", "Car_name_link", "Efficiency", "Fast_charge", "Price.DE.", "Range",
    "Top_speed", "acceleration..0.100.",
)  # fmt: skip
AC_MAX_KW = 11.0
AC_CONNECTOR = "Type 2"
_LINK = re.compile(r"^https?://(?:www\.)?ev-database\.org/car/(\d+)(?:/|$)")


def slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


def ev_database_id(link: str) -> str:
    match = _LINK.match(link)
    if match is None:
        raise ValueError(f"not an ev-database.org car link: {link!r}")
    return match.group(1)


def vehicle_connectors(name: str, dc_max_kw: float | None) -> list[str]:
    if dc_max_kw is None:
        return [AC_CONNECTOR]
    if name.startswith("Tesla"):
        return ["Tesla", "CCS", AC_CONNECTOR]
    if name.startswith(("Nissan Leaf", "Nissan e-NV200")):
        return ["CHAdeMO", AC_CONNECTOR]
    return ["CCS", AC_CONNECTOR]


def _positive(high: float, unit: str) -> pa.Check:
    return pa.Check.in_range(0, high, include_min=False, error=f"is outside 0..{high:g} {unit} (exclusive of 0)")


VEHICLES_FORMAT = TableFormat(
    name="vehicles",
    schema=pa.DataFrameSchema(
        {
            "Battery": pa.Column(float, _positive(500, "kWh"), coerce=True),
            "Car_name": pa.Column(
                str, pa.Check(lambda v: slug(v) != "", element_wise=True, error="has no letters or digits")
            ),
            "Car_name_link": pa.Column(
                str,
                pa.Check.str_matches(_LINK.pattern, error="is not an ev-database.org/car/<id>/ link"),
                unique=True,
                report_duplicates="exclude_first",
            ),
            "Efficiency": pa.Column(float, _positive(1000, "Wh/km"), coerce=True),
            "Fast_charge": pa.Column(float, _positive(10_000, "km/h"), coerce=True, nullable=True),
            "Price.DE.": pa.Column(float, _positive(10_000_000, "EUR"), coerce=True, nullable=True),
            "Range": pa.Column(float, _positive(5_000, "km"), coerce=True),
            "Top_speed": pa.Column(float, _positive(1_000, "km/h"), coerce=True),
            "acceleration..0.100.": pa.Column(float, _positive(100, "s"), coerce=True),
        },
    ),
    missing_markers=frozenset({"", "NA"}),
)


def _optional(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def vehicle_documents(frame: pd.DataFrame) -> Normalised:
    """The ``vehicles`` documents of a validated frame (see the module docstring for the rules)."""
    rows = [dict(zip(frame.columns, row, strict=True)) for row in frame.itertuples(index=False, name=None)]
    slugs = [slug(r["Car_name"]) for r in rows]
    shared = {s for s, n in Counter(slugs).items() if n > 1}
    ids = [f"{s}-{ev_database_id(r['Car_name_link'])}" if s in shared else s for s, r in zip(slugs, rows, strict=True)]
    clashes = [i for i, n in Counter(ids).items() if n > 1]
    if clashes:  # only possible if a name's slug already ends in another row's ev-database id
        raise ReferenceDataError(f"vehicles: ids {clashes} still clash after adding ev-database ids")
    documents = []
    for _id, r in zip(ids, rows, strict=True):
        efficiency = float(r["Efficiency"])
        fast_charge = _optional(r["Fast_charge"])
        dc_max_kw = None if fast_charge is None else round(fast_charge * efficiency / 1000, 3)
        documents.append({
            "_id": _id,
            "name": r["Car_name"],
            "link": r["Car_name_link"],
            "battery_kwh": float(r["Battery"]),
            "efficiency_wh_per_km": efficiency,
            "fast_charge_km_per_h": fast_charge,
            "dc_max_kw": dc_max_kw,
            "ac_max_kw": AC_MAX_KW,
            "connector_types": vehicle_connectors(r["Car_name"], dc_max_kw),
            "price_eur": _optional(r["Price.DE."]),
            "range_km": float(r["Range"]),
            "top_speed_kmh": float(r["Top_speed"]),
            "acceleration_0_100_s": float(r["acceleration..0.100."]),
        })  # fmt: skip
    counts = {
        "id_disambiguated": sum(s in shared for s in slugs),
        "no_dc_charging": sum(d["dc_max_kw"] is None for d in documents),
        "price_missing": sum(d["price_eur"] is None for d in documents),
    }
    return Normalised(documents, counts)
