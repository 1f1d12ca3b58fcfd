"""The documented normalisation rules: inconsistent but legal rows are kept and normalised, not
dropped (an "AC Level 1" charger listed at 350 kW delivers 1.9 kW, its raw capacity kept; an AC
charger listing only CCS serves cars through Type 2), each rule counted; city, opening hours and
connectors are derived as documented; vehicle ids are unique, stable slugs."""

import pytest

from evcharging.reference.datasets import STATIONS, VEHICLES
from evcharging.reference.stations import (
    STATIONS_FORMAT,
    charger_connectors,
    charger_power_kw,
    city_of,
    opening_minutes,
    station_documents,
)
from simulator.connectors import carries
from evcharging.reference.table import RawTable, read_csv
from evcharging.reference.vehicles import VEHICLES_FORMAT, slug, vehicle_connectors, vehicle_documents
from evcharging_tests.reference.rows import GOOD_STATION


def station_document(**changes) -> dict:
    raw = RawTable.from_rows("test", list(GOOD_STATION), [list((GOOD_STATION | changes).values())])
    valid = STATIONS_FORMAT.validate(raw)
    assert valid.rejected == ()
    normalised = station_documents(valid.frame)
    return normalised.documents[0] | {"counts": normalised.counts}


def test_ac_level_1_at_350_kw_is_kept_capped_at_1_9_kw_with_the_raw_capacity():
    doc = station_document(**{"Charger Type": "AC Level 1", "Charging Capacity (kW)": "350"})
    assert (doc["charger_type"], doc["capacity_kw"], doc["power_kw"]) == ("AC Level 1", 350.0, 1.9)
    assert doc["counts"]["power_capped"] == 1


@pytest.mark.parametrize(
    "charger, capacity, power",
    [("AC Level 1", 22, 1.9), ("AC Level 2", 350, 22.0), ("AC Level 2", 22, 22.0),
     ("DC Fast Charger", 350, 350.0), ("DC Fast Charger", 22, 22.0)],
)  # fmt: skip
def test_power_is_the_capacity_capped_by_charger_type(charger, capacity, power):
    assert charger_power_kw(charger, capacity) == power


def test_an_uncapped_row_is_not_counted():
    doc = station_document(**{"Charger Type": "DC Fast Charger", "Charging Capacity (kW)": "150"})
    assert doc["power_kw"] == doc["capacity_kw"] == 150.0 and doc["counts"]["power_capped"] == 0


@pytest.mark.parametrize(
    "address, city",
    [("8970 San Francisco Ave, San Francisco", "San Francisco"), ("4826 Random Rd, City 98, Country", "City 98"),
     ("1 Unter den Linden, Berlin, Germany", "Berlin"), ("Somewhere", "Somewhere")],
)  # fmt: skip
def test_city_rule(address, city):
    assert city_of(address) == city


@pytest.mark.parametrize(
    "hours, minutes",
    [("24/7", (0, 1440)), ("6:00-22:00", (360, 1320)), ("9:00-18:00", (540, 1080)), ("0:00-24:00", (0, 1440)),
     ("22:00-6:00", None), ("9:60-18:00", None), ("always", None)],
)  # fmt: skip
def test_opening_hours_become_minutes_after_midnight(hours, minutes):
    assert opening_minutes(hours) == minutes


def test_connector_types_are_split_and_stripped():
    assert station_document(**{"Connector Types": "Type 2,  Tesla"})["connector_types"] == ["Type 2", "Tesla"]


@pytest.mark.parametrize(
    "charger, listed, connectors, dropped, defaulted",
    [("AC Level 2", ["Type 2", "Tesla"], ["Type 2", "Tesla"], False, False),
     ("AC Level 1", ["Type 1"], ["Type 1"], False, False),
     ("AC Level 2", ["CCS", "Type 2"], ["Type 2"], True, False),
     ("AC Level 2", ["Tesla", "CHAdeMO"], ["Tesla"], True, False),       # Tesla/NACS carries AC and DC
     ("AC Level 1", ["CCS", "CHAdeMO"], ["Type 2"], True, True),         # nothing left: the AC default
     ("DC Fast Charger", ["CHAdeMO", "GB/T"], ["CHAdeMO", "GB/T"], False, False),
     ("DC Fast Charger", ["Type 2", "Tesla"], ["Tesla"], True, False),
     ("DC Fast Charger", ["Type 2"], ["CCS"], True, True)],             # nothing left: the DC default
)  # fmt: skip
def test_connectors_that_cannot_carry_the_chargers_current_are_dropped(charger, listed, connectors, dropped,
                                                                        defaulted):
    assert charger_connectors(charger, listed) == (
        connectors, {"connectors_dropped": dropped, "connector_defaulted": defaulted})


def test_a_contradicting_row_is_kept_normalised_and_counted():
    doc = station_document(**{"Charger Type": "AC Level 2", "Connector Types": "CCS, CHAdeMO"})
    assert (doc["charger_type"], doc["connector_types"]) == ("AC Level 2", ["Type 2"])
    assert doc["counts"] == {"power_capped": 1, "connectors_dropped": 1, "connector_defaulted": 1}
    fitting = station_document(**{"Charger Type": "DC Fast Charger", "Connector Types": "GB/T, CCS"})
    assert fitting["connector_types"] == ["GB/T", "CCS"]
    assert fitting["counts"] == {"power_capped": 0, "connectors_dropped": 0, "connector_defaulted": 0}


def test_every_kaggle_station_offers_only_connectors_of_its_current(kaggle_stations_csv):
    prepared = STATIONS.prepare(kaggle_stations_csv)
    for doc in prepared.documents:
        dc = doc["charger_type"] == "DC Fast Charger"
        assert doc["connector_types"] and all(carries(c, dc) for c in doc["connector_types"])
    # The file draws connectors independently of the charger type, so both rules take often.
    assert prepared.normalisation["connectors_dropped"] > 1000
    assert 0 < prepared.normalisation["connector_defaulted"] < prepared.normalisation["connectors_dropped"]


@pytest.mark.parametrize(
    "name, dc, connectors",
    [("Tesla Model 3", 120.0, ["Tesla", "CCS", "Type 2"]), ("Nissan Leaf e+", 46.0, ["CHAdeMO", "Type 2"]),
     ("Nissan e-NV200", 40.0, ["CHAdeMO", "Type 2"]), ("Nissan Ariya 63kWh", 130.0, ["CCS", "Type 2"]),
     ("BYD ATTO 3", 80.0, ["CCS", "Type 2"]), ("Renault Twingo Electric", None, ["Type 2"])],
)  # fmt: skip
def test_vehicle_connector_rule(name, dc, connectors):
    assert vehicle_connectors(name, dc) == connectors


@pytest.mark.parametrize(
    "name, expected",
    [("Tesla Model Y Long Range Dual Motor", "tesla-model-y-long-range-dual-motor"), ("Mercedes EQA 250+", "mercedes-eqa-250"),
     ("Nissan Ariya e-4ORCE 87kWh - 225 kW", "nissan-ariya-e-4orce-87kwh-225-kw"), ("Škoda Enyaq iV 80", "skoda-enyaq-iv-80"),
     ("e.Go e.wave X", "e-go-e-wave-x")],
)  # fmt: skip
def test_slugs_are_lowercase_ascii_with_dashes(name, expected):
    assert slug(name) == expected


def test_vehicle_ids_are_unique_and_shared_names_get_the_ev_database_id(kaggle_vehicles_csv):
    documents = VEHICLES.prepare(kaggle_vehicles_csv).documents
    ids = [d["_id"] for d in documents]
    assert len(set(ids)) == len(ids) == 360
    assert all(i == slug(i) for i in ids)
    model_y = sorted(d["_id"] for d in documents if d["name"] == "Tesla Model Y")
    assert model_y == ["tesla-model-y-1743", "tesla-model-y-1974"]
    assert "tesla-model-y-long-range-dual-motor" in ids  # a unique name keeps its bare slug


def test_vehicle_ids_do_not_depend_on_row_order(kaggle_vehicles_csv):
    frame = VEHICLES_FORMAT.validate(read_csv(kaggle_vehicles_csv)).frame
    shuffled = frame.sample(frac=1, random_state=4)
    ids = {d["link"]: d["_id"] for d in vehicle_documents(frame).documents}
    assert ids == {d["link"]: d["_id"] for d in vehicle_documents(shuffled).documents}
