"""Marts: the questions the warehouse is opened for, rebuilt whole from the facts and dimensions.

Built from completed sessions (``fact_charging_sessions``): a session still charging at the edge of
the data appears once it has ended. A session's energy is spread over the hours it was plugged in
in proportion to the time spent in each (the events would give the exact curve; at hour grain the
difference is small and the mart stays one pass over the sessions).
"""

from __future__ import annotations

from evcharging.warehouse.schema import qualified
from evcharging.warehouse.tables import bar_chart_md, rebuild_from_select

__all__ = ["MARTS", "mart_chart", "rebuild_mart"]


def _sources(db: str) -> dict[str, str]:
    return {"sessions": f"(SELECT * FROM {qualified(db, 'fact_charging_sessions')} FINAL)",
            "stations": f"(SELECT * FROM {qualified(db, 'dim_stations')} FINAL)",
            "hours": f"(SELECT count() FROM {qualified(db, 'dim_time')} FINAL)"}


def station_hourly_utilisation_sql(db: str) -> str:
    src = _sources(db)
    return f"""
SELECT s.station_id AS station_id, s.hour AS hour, any(d.city) AS city, any(d.charger_type) AS charger_type,
       any(d.parking_spots) AS chargers, count() AS sessions, sum(s.seconds) AS occupied_s,
       if(chargers > 0, occupied_s / (chargers * 3600), 0) AS utilisation, sum(s.kwh) AS energy_kwh
FROM (
    SELECT station_id, hour,
           greatest(0., dateDiff('millisecond', greatest(start_time, toDateTime64(hour, 3, 'UTC')),
                                 least(end_time, toDateTime64(hour + INTERVAL 1 HOUR, 3, 'UTC'))) / 1000.) AS seconds,
           if(duration_s > 0, energy_kwh * seconds / duration_s, energy_kwh) AS kwh
    FROM {src['sessions']}
    ARRAY JOIN arrayMap(i -> toStartOfHour(toDateTime(start_time, 'UTC')) + toIntervalHour(i),
                        range(toUInt64(dateDiff('hour', toStartOfHour(toDateTime(start_time, 'UTC')),
                                                toStartOfHour(toDateTime(end_time, 'UTC'))) + 1))) AS hour
) AS s
LEFT JOIN {src['stations']} AS d ON d.station_id = s.station_id
GROUP BY s.station_id, s.hour"""


def daily_energy_by_city_operator_sql(db: str) -> str:
    src = _sources(db)
    return f"""
SELECT toDate(s.start_time) AS date, if(empty(d.city), '(unknown station)', d.city) AS city,
       if(empty(d.operator), '(unknown station)', d.operator) AS operator,
       count() AS sessions, uniqExact(s.vehicle_id) AS vehicles, sum(s.energy_kwh) AS energy_kwh,
       sum(s.energy_kwh * d.cost_usd_per_kwh) AS revenue_usd,
       avg(s.duration_s) / 60 AS avg_duration_min, avg(s.wait_s) / 60 AS avg_wait_min
FROM {src['sessions']} AS s
LEFT JOIN {src['stations']} AS d ON d.station_id = s.station_id
GROUP BY date, city, operator"""


def charger_type_kpis_sql(db: str) -> str:
    """``stations``, ``chargers`` and ``utilisation`` describe the network as it is now: stations
    retired from the reference data are left out (their chargers are no capacity any more, and
    their sessions' time is left out of the occupied time too). ``sessions``, energy, power, times
    and fault rate are history: every session, also those at stations retired since. A charger
    type whose stations are all retired keeps its row, with no stations or chargers."""
    src = _sources(db)
    return f"""
WITH {src['hours']} AS hours
SELECT if(empty(st.charger_type), k.charger_type, st.charger_type) AS charger_type,
       st.stations AS stations, st.chargers AS chargers,
       k.sessions AS sessions, k.energy_kwh AS energy_kwh, k.avg_energy_kwh AS avg_energy_kwh,
       k.avg_power_kw AS avg_power_kw, k.peak_power_kw AS peak_power_kw,
       k.avg_duration_min AS avg_duration_min, k.avg_wait_min AS avg_wait_min, k.p95_wait_min AS p95_wait_min,
       k.fault_rate AS fault_rate,
       if(st.chargers * hours > 0, k.occupied_s / (st.chargers * hours * 3600), 0) AS utilisation
FROM (SELECT charger_type, count() AS stations, sum(parking_spots) AS chargers
      FROM {src['stations']} WHERE NOT retired GROUP BY charger_type) AS st
FULL OUTER JOIN (
    SELECT d.charger_type AS charger_type, count() AS sessions, sum(s.energy_kwh) AS energy_kwh,
           avg(s.energy_kwh) AS avg_energy_kwh, avg(s.avg_power_kw) AS avg_power_kw,
           max(s.peak_power_kw) AS peak_power_kw, avg(s.duration_s) / 60 AS avg_duration_min,
           avg(s.wait_s) / 60 AS avg_wait_min, quantileExact(0.95)(s.wait_s) / 60 AS p95_wait_min,
           countIf(s.end_reason = 'fault') / count() AS fault_rate, sumIf(s.duration_s, NOT d.retired) AS occupied_s
    FROM {src['sessions']} AS s
    INNER JOIN {src['stations']} AS d ON d.station_id = s.station_id
    GROUP BY d.charger_type) AS k ON k.charger_type = st.charger_type"""


# mart -> (SELECT builder, preview order, chart query, chart title, unit)
MARTS = {
    "mart_station_hourly_utilisation": (
        station_hourly_utilisation_sql, "hour DESC, utilisation DESC",
        "SELECT formatDateTime(hour, '%m-%d %H:00') AS label, sum(energy_kwh) AS v FROM {t} "
        "GROUP BY hour ORDER BY hour DESC LIMIT 24",
        "Energy delivered per hour, all stations (latest 24 hours)", "kWh"),
    "mart_daily_energy_by_city_operator": (
        daily_energy_by_city_operator_sql, "date DESC, energy_kwh DESC",
        "SELECT city AS label, sum(energy_kwh) AS v FROM {t} GROUP BY city ORDER BY v DESC LIMIT 12",
        "Energy per city (top 12)", "kWh"),
    "mart_charger_type_kpis": (
        charger_type_kpis_sql, "energy_kwh DESC",
        "SELECT charger_type AS label, utilisation * 100 AS v FROM {t} ORDER BY v DESC",
        "Utilisation per charger type", "%"),
}


def rebuild_mart(wh, database: str, mart: str) -> int:
    build, *_ = MARTS[mart]
    return rebuild_from_select(wh, database, mart, build(database))


def mart_chart(wh, database: str, mart: str) -> str:
    _, _, query, title, unit = MARTS[mart]
    rows = wh.query_rows(query.format(t=qualified(database, mart)))
    if mart == "mart_station_hourly_utilisation":
        rows = rows[::-1]  # oldest first, as a time axis reads
    return bar_chart_md(title, [(str(label), float(v)) for label, v in rows], unit)
