"""The synthetic generator (the default without Kaggle files) is deterministic by seed, produces any
number of rows in the Kaggle files' exact columns and value domains, and passes the same
validation as a real file with no rejected row."""

import pytest

from evcharging.reference.datasets import STATIONS, VEHICLES
from evcharging.reference.stations import STATION_COLUMNS
from evcharging.reference.synthetic import CITY_BOXES, synthetic_stations, synthetic_vehicles
from evcharging.reference.table import read_csv
from evcharging.reference.vehicles import VEHICLE_COLUMNS


def test_same_seed_same_data_other_seed_other_data():
    assert synthetic_stations(300, seed=5) == synthetic_stations(300, seed=5)
    assert synthetic_vehicles(100, seed=5) == synthetic_vehicles(100, seed=5)
    assert synthetic_stations(300, seed=5).records != synthetic_stations(300, seed=6).records
    assert synthetic_vehicles(100, seed=5).records != synthetic_vehicles(100, seed=6).records


def test_a_longer_run_extends_a_shorter_one():
    assert synthetic_stations(50, seed=1).records == synthetic_stations(80, seed=1).records[:50]


def test_it_has_the_kaggle_columns():
    assert synthetic_stations(1).header == STATION_COLUMNS
    assert synthetic_vehicles(1).header == VEHICLE_COLUMNS


@pytest.mark.parametrize("rows", [1, 17, 5000])
def test_generated_stations_pass_validation(rows):
    prepared = STATIONS.prepare(None, seed=3, rows=rows)
    assert prepared.rejected == () and len(prepared.documents) == rows
    assert prepared.source == "synthetic, seed 3"


def test_generated_stations_stay_in_the_kaggle_domains():
    documents = STATIONS.prepare(None, seed=9).documents
    assert len(documents) == 5000  # the Kaggle file's size by default
    cities = {d["city"] for d in documents}
    assert set(CITY_BOXES) <= cities and all(c in CITY_BOXES or c.startswith("City ") for c in cities)
    assert {d["capacity_kw"] for d in documents} == {22.0, 50.0, 150.0, 350.0}
    assert {d["opening_hours"] for d in documents} == {"24/7", "6:00-22:00", "9:00-18:00"}
    assert all(1 <= d["parking_spots"] <= 10 and 3.0 <= d["rating"] <= 5.0 for d in documents)
    assert any(d["power_kw"] < d["capacity_kw"] for d in documents)  # capped rows exist, as in the real file


def test_generated_vehicles_pass_validation_with_na_values():
    prepared = VEHICLES.prepare(None, seed=2)
    assert prepared.rejected == () and len(prepared.documents) == 360
    assert prepared.normalisation["price_missing"] > 0
    assert prepared.normalisation["id_disambiguated"] > 0  # repeated names occur, as in the real file
    assert len({d["_id"] for d in prepared.documents}) == 360
    assert all(21.3 <= d["battery_kwh"] <= 123 and 137 <= d["efficiency_wh_per_km"] <= 295 for d in prepared.documents)


def test_written_out_it_reads_back_as_the_same_table(tmp_path):
    table = synthetic_stations(40, seed=8)
    table.write_csv(tmp_path / "stations.csv")
    assert read_csv(tmp_path / "stations.csv").records == table.records
    assert (tmp_path / "stations.csv").read_bytes().count(b"\r\n") == 41  # header + 40 rows, CRLF
