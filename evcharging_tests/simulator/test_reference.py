"""Reference documents (as the loader writes them to MongoDB) become model objects: hours,
connectors and DC limits are read or derived, and a region or limit selects stations."""

from __future__ import annotations

import pytest

from simulator.reference import ReferenceDataError, from_documents
from simulator.synthetic import synthetic_documents

STATION = {"_id": "EVS00002", "station_id": "EVS00002", "latitude": 37.86, "longitude": -122.49,
           "location": {"type": "Point", "coordinates": [-122.49, 37.86]}, "city": "San Francisco",
           "charger_type": "AC Level 1", "capacity_kw": 350, "power_kw": 1.9, "opening_hours": "6:00-22:00",
           "open_minute": 360, "close_minute": 1320, "connector_types": ["Tesla", "Type 2"], "parking_spots": 2}
VEHICLE = {"_id": "tesla-model-3", "name": "Tesla Model 3", "battery_kwh": 70.0, "efficiency_wh_per_km": 153,
           "fast_charge_km_per_h": 910, "dc_max_kw": None, "ac_max_kw": 11.0, "connector_types": ["Type 2", "CCS"]}


def test_documents_become_model_objects():
    (station,), (vehicle,) = from_documents([STATION], [VEHICLE])
    assert (station.station_id, station.city, station.power_kw, station.parking_spots) == (
        "EVS00002", "San Francisco", 1.9, 2)
    assert (station.open_minute, station.close_minute, station.connector_types) == (360, 1320, ("Tesla", "Type 2"))
    assert vehicle.dc_max_kw == pytest.approx(910 * 153 / 1000)  # derived when the document has none
    assert vehicle.connector_types == ("Type 2", "CCS")


def test_missing_optional_fields_are_derived():
    station_doc = {k: v for k, v in STATION.items() if k not in ("open_minute", "close_minute", "power_kw")}
    station_doc["connector_types"] = "CCS, CHAdeMO"
    vehicle_doc = {**VEHICLE, "fast_charge_km_per_h": None, "connector_types": None, "ac_max_kw": None}
    (station,), (vehicle,) = from_documents([station_doc], [vehicle_doc])
    assert (station.open_minute, station.close_minute, station.power_kw) == (360, 1320, 350.0)
    assert station.connector_types == ("CCS", "CHAdeMO")
    assert vehicle.dc_max_kw is None and vehicle.connector_types == ("Type 2",) and vehicle.ac_max_kw == 11.0


def test_region_and_limit_select_stations():
    stations, vehicles = synthetic_documents(stations=30)
    berlin, _ = from_documents(stations, vehicles, region="berlin")
    assert berlin and {s.city for s in berlin} == {"Berlin"}
    first, _ = from_documents(stations, vehicles, limit=5)
    assert [s.station_id for s in first] == [f"EVS{i:05d}" for i in range(1, 6)]


def test_no_usable_data_is_a_clear_error():
    stations, vehicles = synthetic_documents(stations=5)
    with pytest.raises(ReferenceDataError, match="no stations in region 'Atlantis'"):
        from_documents(stations, vehicles, region="Atlantis")
    with pytest.raises(ReferenceDataError, match="no vehicles"):
        from_documents(stations, [])
    with pytest.raises(ReferenceDataError, match="unknown charger_type"):
        from_documents([{**STATION, "charger_type": "Warp"}], vehicles)


@pytest.mark.integration
def test_load_from_mongodb_reads_the_collections(stack_settings):
    """The async PyMongo path against the stack's real MongoDB endpoint, on a throwaway database."""
    import asyncio
    import uuid

    from pymongo import AsyncMongoClient

    from simulator.reference import load_from_mongodb

    database = f"simtest_{uuid.uuid4().hex[:8]}"
    stations, vehicles = synthetic_documents(stations=30)

    async def scenario():
        client = AsyncMongoClient(stack_settings.mongo_url)
        try:
            await client[database]["stations"].insert_many(stations)
            await client[database]["vehicles"].insert_many(vehicles)
            everything = await load_from_mongodb(stack_settings.mongo_url, database)
            berlin = await load_from_mongodb(stack_settings.mongo_url, database, region="berlin", limit=3)
        finally:
            await client.drop_database(database)
            await client.close()
        return everything, berlin

    (all_stations, all_vehicles), (berlin, _) = asyncio.run(scenario())
    assert (all_stations, all_vehicles) == from_documents(stations, vehicles)
    assert len(berlin) == 3 and {s.city for s in berlin} == {"Berlin"}
