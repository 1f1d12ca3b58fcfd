"""Marts: the questions the warehouse is opened for, recomputed from the facts and dimensions.

Built from completed sessions (``fact_charging_sessions``): a session still charging at the edge of
the data appears once it has ended. A session's energy is spread over the hours it was plugged in
in proportion to the time spent in each (the events would give the exact curve; at hour grain the
difference is small and the mart stays one pass over the sessions).

A sessions pass recomputes only the days it wrote sessions for (:func:`refresh_mart` with their
``days``): the day-grain marts are partitioned by day, and each touched day is computed into a
shadow table and swapped in with ``REPLACE PARTITION`` (atomic per day), so the cost follows the
new sessions, not the history. ``mart_charger_type_kpis`` spans all of history, so it is summed
from per-day states (``mart_charger_type_daily``, refreshed the same way): a few rows a day.
``rebuild_mart`` recomputes every day (after a reference reload, or by hand).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from evcharging.warehouse.schema import TABLES, ensure_tables, qualified
from evcharging.warehouse.tables import bar_chart_md, rebuild_from_select

__all__ = ["MARTS", "PREVIEW_WHERE", "SESSION_MAX_HOURS", "mart_chart", "rebuild_mart", "refresh_mart",
           "refresh_mart_from_sessions"]

# The longest a charging session may last (plugged in to unplugged): how far before a day a session
# overlapping it may have started. The simulator's longest dwell (workplace) is under 12 hours.
SESSION_MAX_HOURS = 48


def _days_sql(days: Iterable[date]) -> str:
    return ", ".join(f"toDate('{d.isoformat()}')" for d in sorted(set(days)))


def _sessions(db: str, days: list[date] | None, overlapping: bool = False) -> str:
    """Completed sessions that started on ``days`` (all when None) or, ``overlapping``, that were
    plugged in during one of them. The time bounds prune the fact to those days' parts and granules."""
    table = qualified(db, "fact_charging_sessions")
    if days is None:
        return f"(SELECT * FROM {table} FINAL)"
    first, last = min(days), max(days) + timedelta(days=1)
    since = f"toDateTime64('{first.isoformat()}', 3, 'UTC')"
    if overlapping:
        where = (f"start_time >= {since} - INTERVAL {SESSION_MAX_HOURS} HOUR "
                 f"AND start_time < toDateTime64('{last.isoformat()}', 3, 'UTC') AND end_time >= {since}")
    else:
        where = f"start_time >= {since} AND toDate(start_time) IN ({_days_sql(days)})"
    return f"(SELECT * FROM {table} FINAL WHERE {where})"


def _stations(db: str) -> str:
    return f"(SELECT * FROM {qualified(db, 'dim_stations')} FINAL)"


def station_hourly_utilisation_sql(db: str, days: list[date] | None = None) -> str:
    on_days = f"WHERE toDate(hour) IN ({_days_sql(days)})" if days is not None else ""
    return f"""
SELECT s.station_id AS station_id, s.hour AS hour, any(d.city) AS city, any(d.charger_type) AS charger_type,
       any(d.parking_spots) AS chargers, count() AS sessions, sum(s.seconds) AS occupied_s,
       if(chargers > 0, occupied_s / (chargers * 3600), 0) AS utilisation, sum(s.kwh) AS energy_kwh
FROM (
    SELECT station_id, hour,
           greatest(0., dateDiff('millisecond', greatest(start_time, toDateTime64(hour, 3, 'UTC')),
                                 least(end_time, toDateTime64(hour + INTERVAL 1 HOUR, 3, 'UTC'))) / 1000.) AS seconds,
           if(duration_s > 0, energy_kwh * seconds / duration_s, energy_kwh) AS kwh
    FROM {_sessions(db, days, overlapping=True)}
    ARRAY JOIN arrayMap(i -> toStartOfHour(toDateTime(start_time, 'UTC')) + toIntervalHour(i),
                        range(toUInt64(dateDiff('hour', toStartOfHour(toDateTime(start_time, 'UTC')),
                                                toStartOfHour(toDateTime(end_time, 'UTC'))) + 1))) AS hour
    {on_days}
) AS s
LEFT JOIN {_stations(db)} AS d ON d.station_id = s.station_id
GROUP BY s.station_id, s.hour"""


def daily_energy_by_city_operator_sql(db: str, days: list[date] | None = None) -> str:
    return f"""
SELECT toDate(s.start_time) AS date, if(empty(d.city), '(unknown station)', d.city) AS city,
       if(empty(d.operator), '(unknown station)', d.operator) AS operator,
       count() AS sessions, uniqExact(s.vehicle_id) AS vehicles, sum(s.energy_kwh) AS energy_kwh,
       sum(s.energy_kwh * d.cost_usd_per_kwh) AS revenue_usd,
       avg(s.duration_s) / 60 AS avg_duration_min, avg(s.wait_s) / 60 AS avg_wait_min
FROM {_sessions(db, days)} AS s
LEFT JOIN {_stations(db)} AS d ON d.station_id = s.station_id
GROUP BY date, city, operator"""


def charger_type_daily_sql(db: str, days: list[date] | None = None) -> str:
    """Per day and charger type, the states of :func:`charger_type_kpis_sql`. Sessions at stations
    retired since count as history; their time is left out of the network's occupied time."""
    return f"""
SELECT toDate(s.start_time) AS date, d.charger_type AS charger_type, count() AS sessions,
       sum(s.energy_kwh) AS energy_kwh, sum(s.avg_power_kw) AS sum_avg_power_kw, max(s.peak_power_kw) AS peak_power_kw,
       sum(s.duration_s) AS duration_s, sum(s.wait_s) AS wait_s, quantileTDigestState(0.95)(s.wait_s) AS wait_p95,
       countIf(s.end_reason = 'fault') AS faults, sumIf(s.duration_s, NOT d.retired) AS occupied_s_in_service
FROM {_sessions(db, days)} AS s
INNER JOIN {_stations(db)} AS d ON d.station_id = s.station_id
GROUP BY date, charger_type"""


def charger_type_kpis_sql(db: str) -> str:
    """``stations``, ``chargers`` and ``utilisation`` describe the network as it is now: stations
    retired from the reference data are left out (their chargers are no capacity any more, and
    their sessions' time is left out of the occupied time too). ``sessions``, energy, power, times
    and fault rate are history: every session, also those at stations retired since. A charger
    type whose stations are all retired keeps its row, with no stations or chargers. Summed from
    every day's states in ``mart_charger_type_daily``."""
    hours = f"(SELECT count() FROM {qualified(db, 'dim_time')} FINAL)"
    return f"""
WITH {hours} AS hours
SELECT if(empty(st.charger_type), k.charger_type, st.charger_type) AS charger_type,
       st.stations AS stations, st.chargers AS chargers,
       k.sessions AS sessions, k.energy_kwh AS energy_kwh, k.energy_kwh / k.sessions AS avg_energy_kwh,
       k.sum_avg_power_kw / k.sessions AS avg_power_kw, k.peak_power_kw AS peak_power_kw,
       k.duration_s / k.sessions / 60 AS avg_duration_min, k.wait_s / k.sessions / 60 AS avg_wait_min,
       k.p95_wait_s / 60 AS p95_wait_min, k.faults / k.sessions AS fault_rate,
       if(st.chargers * hours > 0, k.occupied_s / (st.chargers * hours * 3600), 0) AS utilisation
FROM (SELECT charger_type, count() AS stations, sum(parking_spots) AS chargers
      FROM {_stations(db)} WHERE NOT retired GROUP BY charger_type) AS st
FULL OUTER JOIN (
    SELECT charger_type, sum(sessions) AS sessions, sum(energy_kwh) AS energy_kwh,
           sum(sum_avg_power_kw) AS sum_avg_power_kw, max(peak_power_kw) AS peak_power_kw,
           sum(duration_s) AS duration_s, sum(wait_s) AS wait_s, quantileTDigestMerge(0.95)(wait_p95) AS p95_wait_s,
           sum(faults) AS faults, sum(occupied_s_in_service) AS occupied_s
    FROM {qualified(db, 'mart_charger_type_daily')} FINAL
    GROUP BY charger_type HAVING sessions > 0) AS k ON k.charger_type = st.charger_type"""


# mart -> (SELECT builder, preview order, chart query, chart title, unit)
MARTS = {
    "mart_station_hourly_utilisation": (
        station_hourly_utilisation_sql, "hour DESC, utilisation DESC",
        # max(hour) comes from the parts' metadata, and the bound prunes every older day's partition
        "SELECT formatDateTime(hour, '%m-%d %H:00') AS label, sum(energy_kwh) AS v FROM {t} "
        "WHERE hour > (SELECT max(hour) FROM {t}) - INTERVAL 24 HOUR GROUP BY hour ORDER BY hour DESC LIMIT 24",
        "Energy delivered per hour, all stations (latest 24 hours)", "kWh"),
    "mart_daily_energy_by_city_operator": (
        daily_energy_by_city_operator_sql, "date DESC, energy_kwh DESC",
        "SELECT city AS label, sum(energy_kwh) AS v FROM {t} WHERE date > (SELECT max(date) FROM {t}) - 7 "
        "GROUP BY city ORDER BY v DESC LIMIT 12",
        "Energy per city, latest 7 days (top 12)", "kWh"),
    "mart_charger_type_kpis": (
        charger_type_kpis_sql, "energy_kwh DESC",
        "SELECT charger_type AS label, utilisation * 100 AS v FROM {t} ORDER BY v DESC",
        "Utilisation per charger type", "%"),
}


# What a mart's preview shows: its newest day (a read of one partition), not the whole table.
PREVIEW_WHERE = {
    "mart_station_hourly_utilisation": "hour >= toStartOfDay((SELECT max(hour) FROM {t}))",
    "mart_daily_energy_by_city_operator": "date = (SELECT max(date) FROM {t})",
    "mart_charger_type_kpis": "1",
}

# A mart summed whole from the per-day states of another table: (that table, its per-day SELECT).
# Every other mart is day-partitioned itself and refreshed day by day with its own SELECT.
_DAILY_STATES = {"mart_charger_type_kpis": ("mart_charger_type_daily", charger_type_daily_sql)}


def _replace_days(wh, database: str, table: str, select_sql: str, days: list[date]) -> None:
    """Recompute ``days`` of the day-partitioned ``table``: each day is swapped in whole (or dropped
    when it has no rows any more), so readers see a day as it was or as it is, never half of it."""
    shadow = qualified(database, f"{table}__days_{uuid.uuid4().hex[:12]}")  # unique: concurrent refreshes never meet
    wh.command(f"CREATE TABLE {shadow} {TABLES[table]}")
    try:
        wh.command(f"INSERT INTO {shadow} {select_sql}")
        filled = {r[0] for r in wh.query_rows(f"SELECT DISTINCT _partition_id FROM {shadow}")}
        for day in sorted(set(days)):
            partition = day.strftime("%Y%m%d")
            action = "REPLACE PARTITION ID" if partition in filled else "DROP PARTITION ID"
            source = f" FROM {shadow}" if partition in filled else ""
            wh.command(f"ALTER TABLE {qualified(database, table)} {action} '{partition}'{source}")
    finally:
        wh.command(f"DROP TABLE IF EXISTS {shadow}")


def refresh_mart(wh, database: str, mart: str, days: list[date] | None) -> None:
    """Recompute ``mart`` for ``days`` (the days a sessions pass wrote sessions for); every day when None."""
    ensure_tables(wh, database)
    build = MARTS[mart][0]
    table, select = _DAILY_STATES.get(mart, (mart, build))
    if days is None:
        rebuild_from_select(wh, database, table, select(database))
    elif days:
        _replace_days(wh, database, table, select(database, days), days)
    if mart in _DAILY_STATES:  # a few rows per day and charger type: summed whole
        rebuild_from_select(wh, database, mart, build(database))


@dataclass(frozen=True)
class MartRefresh:
    days: list[date] | None  # the days recomputed; None: all of them
    through: str | None  # the newest sessions pass (session_log.sessionized_at) now in the mart


def refresh_mart_from_sessions(wh, database: str, mart: str, full: bool = False) -> MartRefresh:
    """Recompute the days the sessions passes since this mart's last refresh wrote sessions for
    (``mart_log`` holds the newest pass it has seen); every day when ``full``, or the first time."""
    ensure_tables(wh, database)
    log = qualified(database, "mart_log")
    sessions_log = qualified(database, "session_log")
    cursor = wh.query_rows(f"SELECT toString(through) FROM {log} FINAL WHERE mart = '{mart}'")
    [(newest,)] = wh.query_rows(f"SELECT toString(max(sessionized_at)) FROM {sessions_log}")
    if full or not cursor:
        days = None
    else:
        rows = wh.query_rows(f"SELECT DISTINCT arrayJoin(days) FROM {sessions_log} "
                             f"WHERE sessionized_at > toDateTime64('{cursor[0][0]}', 3, 'UTC')")
        days = sorted(r[0] if isinstance(r[0], date) else date.fromisoformat(str(r[0])[:10]) for r in rows)
    refresh_mart(wh, database, mart, days)
    wh.command(f"INSERT INTO {log} (mart, through, refreshed_at) VALUES "
               f"('{mart}', toDateTime64('{newest}', 3, 'UTC'), now64(3, 'UTC'))")
    return MartRefresh(days, newest)


def rebuild_mart(wh, database: str, mart: str) -> None:
    """Recompute every day of ``mart``."""
    refresh_mart(wh, database, mart, None)


def mart_chart(wh, database: str, mart: str) -> str:
    _, _, query, title, unit = MARTS[mart]
    rows = wh.query_rows(query.format(t=qualified(database, mart)))
    if mart == "mart_station_hourly_utilisation":
        rows = rows[::-1]  # oldest first, as a time axis reads
    return bar_chart_md(title, [(str(label), float(v)) for label, v in rows], unit)
