"""Dimensions: stations and vehicle models from the MongoDB reference documents, and hours.

``dim_vehicles`` is keyed by the vehicle *model* (the ``vehicles`` collection's ``_id``), which the
events carry as ``vehicle_model_id``; the fleet vehicle (``vehicle_id``) stays on the facts.

A station or model that left the reference data stays in its dimension, marked ``retired``, as it
last was: the events already in the warehouse still resolve against it.
"""

from __future__ import annotations

from collections.abc import Iterable

from evcharging.warehouse.schema import qualified
from evcharging.warehouse.tables import rebuild, rebuild_from_select

__all__ = ["dim_time_select", "extend_dim_time", "rebuild_dim_stations", "rebuild_dim_time", "rebuild_dim_vehicles",
           "station_rows", "vehicle_rows"]


def station_rows(documents: Iterable[dict]) -> dict[str, list]:
    """``stations`` documents → the columns of ``dim_stations``."""
    keys = ("station_id", "city", "address", "operator", "charger_type", "capacity_kw", "power_kw",
            "cost_usd_per_kwh", "parking_spots", "connector_types", "latitude", "longitude", "opening_hours",
            "open_minute", "close_minute", "renewable_energy", "rating", "installation_year")
    cols: dict[str, list] = {k: [] for k in keys}
    for d in documents:
        row = {**d, "station_id": d.get("station_id") or d["_id"]}
        for k in keys:
            cols[k].append(row.get(k))
    return cols


def vehicle_rows(documents: Iterable[dict]) -> dict[str, list]:
    """``vehicles`` documents → the columns of ``dim_vehicles``."""
    keys = ("name", "battery_kwh", "efficiency_wh_per_km", "dc_max_kw", "ac_max_kw", "connector_types",
            "price_eur", "range_km", "top_speed_kmh", "acceleration_0_100_s")
    cols: dict[str, list] = {"vehicle_model_id": [], **{k: [] for k in keys}}
    for d in documents:
        cols["vehicle_model_id"].append(str(d["_id"]))
        for k in keys:
            cols[k].append(d.get(k))
    return cols


def _arrow(columns: dict[str, list], types: dict):
    import pyarrow as pa

    return pa.table({name: pa.array(values, type=types.get(name)) for name, values in columns.items()})


def _rebuild_keeping_retired(wh, database: str, dimension: str, key: str, table) -> int:
    """Rebuild ``dimension`` from the Arrow ``table`` (the current reference rows); rows of the old
    dimension whose ``key`` the table lacks are kept, marked retired."""
    import pyarrow as pa

    current = table.append_column("retired", pa.array([False] * table.num_rows, pa.bool_()))
    columns = ", ".join(f"`{c}`" for c in table.column_names)

    def fill(shadow: str) -> None:
        if current.num_rows:
            wh.insert_arrow(shadow, current)
        wh.command(f"INSERT INTO {shadow} ({columns}, `retired`) SELECT {columns}, true "
                   f"FROM {qualified(database, dimension)} FINAL WHERE `{key}` NOT IN (SELECT `{key}` FROM {shadow})")

    return rebuild(wh, database, dimension, fill)


def rebuild_dim_stations(wh, database: str, documents: Iterable[dict]) -> int:
    import pyarrow as pa

    table = _arrow(station_rows(documents), {"connector_types": pa.list_(pa.string()),
                                             "renewable_energy": pa.bool_()})
    return _rebuild_keeping_retired(wh, database, "dim_stations", "station_id", table)


def rebuild_dim_vehicles(wh, database: str, documents: Iterable[dict]) -> int:
    import pyarrow as pa

    table = _arrow(vehicle_rows(documents), {"connector_types": pa.list_(pa.string()),
                                             "dc_max_kw": pa.float64(), "price_eur": pa.float64()})
    return _rebuild_keeping_retired(wh, database, "dim_vehicles", "vehicle_model_id", table)


def dim_time_select(database: str) -> str:
    """Every hour from the first arrival (event time minus its queueing) to the last event."""
    events = qualified(database, "fact_charging_events")
    return f"""
WITH
    (SELECT min(addMilliseconds(event_time, -toInt64(wait_s * 1000))) FROM {events}) AS first_time,
    (SELECT max(event_time) FROM {events}) AS last_time,
    toStartOfHour(toDateTime(first_time, 'UTC')) AS first_hour
SELECT
    first_hour + toIntervalHour(number) AS hour,
    toDate(hour) AS date, toYear(hour) AS year, toMonth(hour) AS month, toDayOfMonth(hour) AS day_of_month,
    toDayOfWeek(hour) AS day_of_week, toHour(hour) AS hour_of_day, toISOWeek(hour) AS iso_week,
    toDayOfWeek(hour) >= 6 AS is_weekend
FROM numbers(ifNull(toUInt64(if((SELECT count() FROM {events}) = 0, 0,
    dateDiff('hour', first_hour, toStartOfHour(toDateTime(last_time, 'UTC'))) + 1)), 0))"""


def rebuild_dim_time(wh, database: str) -> int:
    return rebuild_from_select(wh, database, "dim_time", dim_time_select(database))


def _hours_sql(first: str, last: str) -> str:
    """dim_time's rows for every hour from ``first`` to ``last`` (SQL DateTime expressions, whole hours)."""
    return f"""
SELECT {first} + toIntervalHour(number) AS hour,
    toDate(hour) AS date, toYear(hour) AS year, toMonth(hour) AS month, toDayOfMonth(hour) AS day_of_month,
    toDayOfWeek(hour) AS day_of_week, toHour(hour) AS hour_of_day, toISOWeek(hour) AS iso_week,
    toDayOfWeek(hour) >= 6 AS is_weekend
FROM numbers(toUInt64(greatest(0, dateDiff('hour', {first}, {last}) + 1)))"""


def extend_dim_time(wh, database: str) -> int:
    """Extend ``dim_time`` to the hours the loads' events reach (``load_log``'s recorded spans), adding
    only the hours before its first and after its last; return the hours added. The first time (an
    empty dimension) it is built from the events themselves, like :func:`rebuild_dim_time`."""
    from evcharging.warehouse.schema import ensure_tables

    ensure_tables(wh, database)
    dim = qualified(database, "dim_time")
    [(hours, first_hour, last_hour)] = wh.query_rows(
        f"SELECT count(), toUnixTimestamp(min(hour)), toUnixTimestamp(max(hour)) FROM {dim}")
    if not int(hours):
        return rebuild_dim_time(wh, database)
    [(first, last)] = wh.query_rows(
        f"SELECT toUnixTimestamp(toStartOfHour(min(first_event_time))), toUnixTimestamp(toStartOfHour(max(last_event_time))) "
        f"FROM {qualified(database, 'load_log')} FINAL")
    from evcharging.warehouse.load import as_int

    first, last = as_int(first), as_int(last)
    if first is None:  # no load recorded its span yet
        return 0
    added = 0
    hour = "toDateTime({}, 'UTC')".format
    for lo, hi in ((int(first), int(first_hour) - 3600), (int(last_hour) + 3600, int(last))):
        if lo <= hi:
            wh.command(f"INSERT INTO {dim} {_hours_sql(hour(lo), hour(hi))}")
            added += (hi - lo) // 3600 + 1
    return added
