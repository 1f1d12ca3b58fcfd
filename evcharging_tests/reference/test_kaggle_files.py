"""The loaders, run on the real Kaggle files, accept every row: 5,000 stations and 360 vehicles,
with the vehicles file's ``NA`` values kept as missing (None), never as 0 or the text "NA"."""

import pytest

from evcharging.reference.datasets import STATIONS, VEHICLES
from evcharging.reference.stations import CHARGER_POWER_CAPS_KW

STATION_KEYS = {
    "_id", "station_id", "latitude", "longitude", "location", "address", "city", "charger_type",
    "capacity_kw", "power_kw", "cost_usd_per_kwh", "opening_hours", "open_minute", "close_minute",
    "connector_types", "operator", "distance_to_city_km", "usage_avg_users_per_day",
    "installation_year", "renewable_energy", "rating", "parking_spots", "maintenance_frequency",
}  # fmt: skip
VEHICLE_KEYS = {
    "_id", "name", "link", "battery_kwh", "efficiency_wh_per_km", "fast_charge_km_per_h", "dc_max_kw",
    "ac_max_kw", "connector_types", "price_eur", "range_km", "top_speed_kmh", "acceleration_0_100_s",
}  # fmt: skip


@pytest.fixture(scope="module")
def stations(kaggle_stations_csv):
    return STATIONS.prepare(kaggle_stations_csv)


@pytest.fixture(scope="module")
def vehicles(kaggle_vehicles_csv):
    return VEHICLES.prepare(kaggle_vehicles_csv)


def test_all_5000_stations_load(stations, kaggle_stations_csv):
    assert stations.rejected == ()
    assert len(stations.documents) == 5000
    assert len({d["_id"] for d in stations.documents}) == 5000
    assert stations.source == str(kaggle_stations_csv)


def test_station_documents_have_the_documented_shape(stations):
    first = stations.documents[0]
    assert set(first) == STATION_KEYS
    assert first["_id"] == first["station_id"] == "EVS00001"
    assert first["location"] == {"type": "Point", "coordinates": [77.974972, -33.400998]}
    assert first["city"] == "City 98"  # "4826 Random Rd, City 98, Country"
    assert first["connector_types"] == ["Type 2"]  # "AC Level 2" listing "CCS, CHAdeMO": see test_normalisation
    assert (first["opening_hours"], first["open_minute"], first["close_minute"]) == ("9:00-18:00", 540, 1080)
    assert first["renewable_energy"] is True and first["parking_spots"] == 7
    second = stations.documents[1]
    assert second["city"] == "San Francisco" and second["opening_hours"] == "24/7"
    assert (second["open_minute"], second["close_minute"]) == (0, 1440)


def test_station_cities_are_the_15_cities_or_placeholder_cities(stations):
    cities = {d["city"] for d in stations.documents}
    named = {c for c in cities if not c.startswith("City ")}
    assert len(named) == 15 and "São Paulo" in named


def test_power_never_exceeds_the_charger_type_cap_and_capacity_is_kept(stations):
    for doc in stations.documents:
        cap = CHARGER_POWER_CAPS_KW[doc["charger_type"]] or doc["capacity_kw"]
        assert doc["power_kw"] == min(doc["capacity_kw"], cap)
        assert doc["capacity_kw"] in {22.0, 50.0, 150.0, 350.0}
    capped = sum(d["power_kw"] < d["capacity_kw"] for d in stations.documents)
    assert stations.normalisation["power_capped"] == capped > 0


def test_all_360_vehicles_load(vehicles):
    assert vehicles.rejected == ()
    assert len(vehicles.documents) == 360
    assert set(vehicles.documents[0]) == VEHICLE_KEYS


def test_na_is_kept_as_missing(vehicles):
    no_fast_charge = {d["name"] for d in vehicles.documents if d["fast_charge_km_per_h"] is None}
    assert no_fast_charge == {"Renault Twingo Electric", "e.Go e.wave X"}
    for doc in vehicles.documents:
        assert (doc["dc_max_kw"] is None) == (doc["fast_charge_km_per_h"] is None)
    assert sum(d["price_eur"] is None for d in vehicles.documents) == 51
    assert vehicles.normalisation["no_dc_charging"] == 2 and vehicles.normalisation["price_missing"] == 51


def test_dc_power_is_km_per_hour_times_wh_per_km(vehicles):
    model_y = next(d for d in vehicles.documents if d["name"] == "Tesla Model Y Long Range Dual Motor")
    assert model_y["dc_max_kw"] == pytest.approx(670 * 172 / 1000)
    assert model_y["ac_max_kw"] == 11.0
    assert model_y["connector_types"] == ["Tesla", "CCS", "Type 2"]
    leaf = next(d for d in vehicles.documents if d["name"] == "Nissan Leaf")
    assert leaf["connector_types"] == ["CHAdeMO", "Type 2"]
    twingo = next(d for d in vehicles.documents if d["name"] == "Renault Twingo Electric")
    assert twingo["connector_types"] == ["Type 2"]
