"""Stations and vehicles for the simulation: read from MongoDB (PyMongo's async client) or given
as plain documents, and turned into model objects by one pure function, `from_documents`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from simulator.model import (
    CHARGER_TYPES, DEFAULT_AC_MAX_KW, Station, VehicleSpec, dc_max_kw,
)


SERVER_SELECTION_TIMEOUT_MS = 5000  # fail with a clear message rather than hang on a dead server


class ReferenceDataError(RuntimeError):
    """The reference data cannot be read or is unusable; the message names what to fix."""


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.strip().split(":")
    return int(hours) * 60 + int(minutes)


def _opening_minutes(doc: Mapping[str, Any]) -> tuple[int, int]:
    if doc.get("open_minute") is not None and doc.get("close_minute") is not None:
        return int(doc["open_minute"]), int(doc["close_minute"])
    hours = str(doc.get("opening_hours") or "24/7")
    if hours == "24/7":
        return 0, 1440
    start, end = hours.split("-")
    return _minutes(start), _minutes(end)


def _connectors(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(c.strip() for c in value or () if c and c.strip())


def station_from_document(doc: Mapping[str, Any]) -> Station:
    charger_type = doc["charger_type"]
    if charger_type not in CHARGER_TYPES:
        raise ReferenceDataError(f"station {doc.get('_id')}: unknown charger_type {charger_type!r}")
    open_minute, close_minute = _opening_minutes(doc)
    power = doc.get("power_kw")
    return Station(
        station_id=str(doc.get("station_id") or doc["_id"]),
        city=str(doc.get("city") or f"{round(doc['latitude'])},{round(doc['longitude'])}"),
        latitude=float(doc["latitude"]), longitude=float(doc["longitude"]),
        charger_type=charger_type,
        power_kw=float(power if power is not None else doc["capacity_kw"]),
        connector_types=_connectors(doc.get("connector_types")),
        parking_spots=max(1, int(doc.get("parking_spots") or 1)),
        open_minute=open_minute, close_minute=close_minute,
    )


def vehicle_from_document(doc: Mapping[str, Any]) -> VehicleSpec:
    efficiency = float(doc["efficiency_wh_per_km"])
    dc = doc.get("dc_max_kw")
    if dc is None:
        dc = dc_max_kw(doc.get("fast_charge_km_per_h"), efficiency)
    connectors = _connectors(doc.get("connector_types")) or (("Type 2", "CCS") if dc else ("Type 2",))
    return VehicleSpec(
        model_id=str(doc["_id"]), name=str(doc.get("name") or doc["_id"]),
        battery_kwh=float(doc["battery_kwh"]), efficiency_wh_per_km=efficiency,
        ac_max_kw=float(doc.get("ac_max_kw") or DEFAULT_AC_MAX_KW),
        dc_max_kw=float(dc) if dc else None, connector_types=connectors,
    )


def from_documents(stations: Iterable[Mapping[str, Any]], vehicles: Iterable[Mapping[str, Any]], *,
                   region: str | None = None, limit: int | None = None,
                   ) -> tuple[list[Station], list[VehicleSpec]]:
    """Model objects from station and vehicle documents, stations sorted by id so a given
    `limit` always means the same stations; `region` keeps one city (case-insensitive)."""
    station_list = sorted((station_from_document(d) for d in stations), key=lambda s: s.station_id)
    if region:
        station_list = [s for s in station_list if s.city.casefold() == region.casefold()]
    if limit is not None:
        station_list = station_list[:limit]
    vehicle_list = sorted((vehicle_from_document(d) for d in vehicles), key=lambda v: v.model_id)
    if not station_list:
        raise ReferenceDataError(f"no stations{f' in region {region!r}' if region else ''}: "
                                 "load the reference data first (or use --source synthetic)")
    if not vehicle_list:
        raise ReferenceDataError("no vehicles: load the reference data first (or use --source synthetic)")
    return station_list, vehicle_list


async def load_from_mongodb(url: str, database: str, *, region: str | None = None,
                            limit: int | None = None) -> tuple[list[Station], list[VehicleSpec]]:
    """Read the `stations` and `vehicles` collections and convert them."""
    from pymongo import AsyncMongoClient
    from pymongo.errors import PyMongoError

    client: AsyncMongoClient = AsyncMongoClient(url, serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS)
    try:
        db = client[database]
        query = {"city": {"$regex": f"^{re.escape(region)}$", "$options": "i"}} if region else {}
        station_docs = await db["stations"].find(query).to_list(None)
        vehicle_docs = await db["vehicles"].find({}).to_list(None)
    except PyMongoError as exc:
        raise ReferenceDataError(
            f"MongoDB at {url} (database {database!r}) could not be read: {exc}. "
            "Check EVCHARGING_MONGO_URL / EVCHARGING_MONGO_DATABASE, or use --source synthetic."
        ) from exc
    finally:
        await client.close()
    return from_documents(station_docs, vehicle_docs, region=region, limit=limit)
