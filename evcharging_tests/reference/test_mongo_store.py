"""Against the real local MongoDB-protocol server (FerretDB): the Kaggle files load into their
collections, a reload changes nothing (same counts, no duplicates), the indexes exist (the 2dsphere
one wherever the server supports it), rejected rows never reach the database, a collection mirrors
its source, and the Dagster assets materialize reporting the counts."""

import asyncio

import dagster as dg
import pymongo
import pytest

from evcharging.defs.reference.assets import stations, vehicles
from evcharging.reference.datasets import STATIONS, VEHICLES
from evcharging.reference.store import store_reference
from evcharging.reference.stations import STATION_COLUMNS
from evcharging.resources.mongo import MongoResource
from evcharging_tests.reference.rows import line, station

pytestmark = pytest.mark.integration


@pytest.fixture
def mongo(stack_settings, unique_name):
    """A MongoResource on a database of this test's own, dropped afterwards."""
    resource = MongoResource(url=stack_settings.mongo_url, database=f"evc_reference_{unique_name}")
    yield resource
    with pymongo.MongoClient(resource.url, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(resource.database)


@pytest.fixture
def db(mongo):
    with pymongo.MongoClient(mongo.url, serverSelectionTimeoutMS=5000) as client:
        yield client[mongo.database]


def store(mongo: MongoResource, dataset, prepared):
    async def run():
        async with mongo.open_database() as database:
            return await store_reference(database, dataset, prepared)

    return asyncio.run(run())


def test_kaggle_files_load_and_reload_changes_nothing(mongo, db, kaggle_stations_csv, kaggle_vehicles_csv):
    for dataset, path, rows in [(STATIONS, kaggle_stations_csv, 5000), (VEHICLES, kaggle_vehicles_csv, 360)]:
        prepared = dataset.prepare(path)
        first = store(mongo, dataset, prepared)
        assert (first.loaded, first.inserted, first.updated, first.removed, first.rejected_count) == (rows, rows, 0, 0, 0)
        again = store(mongo, dataset, prepared)
        assert (again.loaded, again.inserted, again.updated, again.unchanged, again.removed) == (rows, 0, 0, rows, 0)
        assert db[dataset.collection].count_documents({}) == rows
    twingo = db.vehicles.find_one({"_id": "renault-twingo-electric"})
    assert twingo["fast_charge_km_per_h"] is None and twingo["dc_max_kw"] is None
    assert db.stations.find_one({"_id": "EVS00002"})["location"] == {"type": "Point", "coordinates": [-122.490299, 37.861857]}


def test_indexes_exist_and_the_geo_index_where_supported(mongo, db):
    result = store(mongo, STATIONS, STATIONS.prepare(None, rows=20))
    store(mongo, VEHICLES, VEHICLES.prepare(None, rows=20))
    station_indexes = db.stations.index_information()
    assert {"city", "charger_type", "operator"} <= set(station_indexes)
    if result.geo_index == "2dsphere on location":
        assert station_indexes["location_2dsphere"]["key"] == [("location", "2dsphere")]
    else:  # FerretDB v1
        assert result.geo_index.startswith("2dsphere index on stations.location skipped")
        assert "location_2dsphere" not in station_indexes
    vehicle_indexes = db.vehicles.index_information()
    assert vehicle_indexes["link_unique"].get("unique") is True and "name" in vehicle_indexes
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        existing = db.vehicles.find_one()
        db.vehicles.insert_one(existing | {"_id": "another-id"})


def test_rejected_rows_never_reach_the_database(mongo, db, write_csv):
    path = write_csv("stations.csv", [
        line(STATION_COLUMNS), station(), station({"Station ID": "EVS00002", "Latitude": "95"}),
        station({"Station ID": "EVS00003"}),
    ])  # fmt: skip
    result = store(mongo, STATIONS, STATIONS.prepare(path))
    assert result.loaded == 2 and [r.line for r in result.rejected] == [3]
    assert sorted(d["_id"] for d in db.stations.find({}, {"_id": 1})) == ["EVS00001", "EVS00003"]


def test_the_collection_mirrors_its_source(mongo, db):
    store(mongo, STATIONS, STATIONS.prepare(None, rows=50))
    result = store(mongo, STATIONS, STATIONS.prepare(None, rows=30))
    assert (result.loaded, result.removed, result.inserted, result.unchanged) == (30, 20, 0, 30)
    assert db.stations.count_documents({}) == 30
    other_seed = store(mongo, STATIONS, STATIONS.prepare(None, seed=1, rows=30))
    assert (other_seed.updated, other_seed.unchanged) == (30, 0)
    assert db.stations.find_one({"_id": "EVS00001"}) == STATIONS.prepare(None, seed=1, rows=1).documents[0]


def test_two_concurrent_loads_insert_each_document_once(mongo, db):
    prepared = STATIONS.prepare(None, rows=300)

    async def both():
        async with mongo.open_database() as database:
            return await asyncio.gather(*(store_reference(database, STATIONS, prepared, chunk_size=50) for _ in range(2)))

    results = asyncio.run(both())
    assert sum(r.inserted for r in results) == 300  # the loser's duplicate inserts were retried as upserts
    assert all(r.loaded == 300 for r in results) and db.stations.count_documents({}) == 300


def metadata(result: dg.ExecuteInProcessResult, asset) -> dict:
    [materialization] = result.asset_materializations_for_node(asset.op.name)
    return {key: value.value for key, value in materialization.metadata.items()}


def test_assets_materialize_from_the_kaggle_files_with_counts(mongo, db, kaggle_stations_csv, kaggle_vehicles_csv):
    run_config = {"ops": {
        stations.op.name: {"config": {"csv_path": str(kaggle_stations_csv)}},
        vehicles.op.name: {"config": {"csv_path": str(kaggle_vehicles_csv)}},
    }}  # fmt: skip
    result = dg.materialize([stations, vehicles], resources={"mongo": mongo}, run_config=run_config)
    assert result.success
    s, v = metadata(result, stations), metadata(result, vehicles)
    assert (s["dagster/row_count"], s["rejected_rows"], s["inserted"]) == (5000, 0, 5000)
    assert s["source"] == str(kaggle_stations_csv) and s["power_capped"] > 0
    assert s["rejected_preview"] == "No rejected rows."
    assert (v["dagster/row_count"], v["rejected_rows"], v["price_missing"]) == (360, 0, 51)
    assert db.stations.count_documents({}) == 5000 and db.vehicles.count_documents({}) == 360


def test_assets_default_to_synthetic_data_and_report_rejections(mongo, db, monkeypatch, write_csv):
    monkeypatch.delenv("EVCHARGING_VEHICLES_CSV", raising=False)
    result = dg.materialize(
        [vehicles], resources={"mongo": mongo},
        run_config={"ops": {vehicles.op.name: {"config": {"seed": 3, "synthetic_rows": 40}}}},
    )  # fmt: skip
    v = metadata(result, vehicles)
    assert (v["dagster/row_count"], v["source"], v["rejected_rows"]) == (40, "synthetic, seed 3", 0)

    monkeypatch.setenv("EVCHARGING_REFERENCE_MAX_REJECTED_SHARE", "0.5")  # one row of two: allowed here
    broken = write_csv("stations.csv", [line(STATION_COLUMNS), station(), station({"Station ID": "EVS00002", "Latitude": "x"})])
    result = dg.materialize([stations], resources={"mongo": mongo}, run_config={"ops": {stations.op.name: {"config": {"csv_path": str(broken)}}}})
    s = metadata(result, stations)
    assert (s["dagster/row_count"], s["rejected_rows"]) == (1, 1)
    assert "| 3 | Latitude 'x' is not a number |" in s["rejected_preview"]
