"""Physics invariants of a simulated event stream, as pure functions returning what breaks them.

Each returns a list of violations (empty when the invariant holds), so a test can assert `== []`
and see the offending events. The limits are restated here from the connector and vehicle data,
not taken from `simulator.model.session_power_cap`, so a wrong cap in the model cannot pass its
own check.
"""

from __future__ import annotations

from simulator.connectors import CONNECTORS
from simulator.events import parse_event_time
from simulator.model import Station, VehicleSpec

AC_CEILING_KW = 43.5  # the most any AC connector carries (Type 2, three phase 63 A)
TOLERANCE_KW = 1e-9


def seconds(event: dict) -> float:
    return parse_event_time(event["event_time"]).timestamp()


def power_limit_kw(station: Station, spec: VehicleSpec, connector: str) -> float:
    """min(charger, connector, vehicle): DC against the vehicle's DC limit, AC against the
    connector's AC rating and the on-board charger."""
    if station.is_dc:
        return min(station.power_kw, spec.dc_max_kw or 0.0)
    return min(station.power_kw, CONNECTORS[connector].ac_max_kw or 0.0, spec.ac_max_kw)


def power_violations(events: list[dict], stations: dict[str, Station], specs: dict[str, VehicleSpec]) -> list[str]:
    """Events whose power is not positive or exceeds min(charger, connector, vehicle), or, on AC,
    the AC ceiling of any connector."""
    found = []
    for e in events:
        station, spec = stations[e["station_id"]], specs[e["vehicle_id"]]
        limit = power_limit_kw(station, spec, e["connector_type"])
        if not 0 < e["power_kw"] <= limit + TOLERANCE_KW:
            found.append(f"{e['event_id']}: {e['power_kw']} kW, limit {limit} kW")
        if not station.is_dc and e["power_kw"] > AC_CEILING_KW:
            found.append(f"{e['event_id']}: AC session at {e['power_kw']} kW")
    return found


def connector_violations(sessions: dict[str, list[dict]], stations: dict[str, Station],
                         specs: dict[str, VehicleSpec]) -> list[str]:
    """Sessions on a connector that the station or vehicle lacks, or that cannot carry the
    station's current: no DC through an AC connector, no AC through a DC one."""
    found = []
    for session_id, events in sessions.items():
        first = events[0]
        station, spec, connector = stations[first["station_id"]], specs[first["vehicle_id"]], first["connector_type"]
        if connector not in station.connector_types or connector not in spec.connector_types:
            found.append(f"{session_id}: {connector} not shared by {station.station_id} and {spec.model_id}")
        elif connector not in CONNECTORS:
            found.append(f"{session_id}: unknown connector {connector}")
        elif station.is_dc and not CONNECTORS[connector].dc:
            found.append(f"{session_id}: DC session on AC connector {connector}")
        elif not station.is_dc and CONNECTORS[connector].ac_max_kw is None:
            found.append(f"{session_id}: AC session on DC connector {connector}")
    return found


def energy_violations(sessions: dict[str, list[dict]]) -> list[str]:
    """Sessions whose energy is not the integral of their emitted power.

    Independently of the model's closed form: power only falls during a session, so each step's
    energy lies between its end and start power times its length, and the trapezoidal sum tracks
    the cumulative energy (its only error is the curve's kink at the taper start inside a step)."""
    found = []
    for session_id, events in sessions.items():
        if events[0]["energy_kwh"] != 0.0:
            found.append(f"{session_id}: starts at {events[0]['energy_kwh']} kWh")
        integral = 0.0
        for a, b in zip(events, events[1:]):
            hours = (seconds(b) - seconds(a)) / 3600
            step = b["energy_kwh"] - a["energy_kwh"]
            integral += (a["power_kw"] + b["power_kw"]) / 2 * hours
            if b["power_kw"] > a["power_kw"]:
                found.append(f"{b['event_id']}: power rose from {a['power_kw']} to {b['power_kw']} kW")
            elif not b["power_kw"] * hours - 2e-4 <= step <= a["power_kw"] * hours + 2e-4:
                found.append(f"{b['event_id']}: {step:.4f} kWh in {hours:.4f} h at {a['power_kw']}-{b['power_kw']} kW")
            elif abs(b["energy_kwh"] - integral) > max(2e-3, 5e-3 * integral):
                found.append(f"{b['event_id']}: {b['energy_kwh']} kWh, integral of power {integral:.4f} kWh")
    return found
