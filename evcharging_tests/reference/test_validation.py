"""Bad input is reported, never loaded, never fatal for the good rows: each broken row of a file
comes back as a RejectedRow with its physical line number (header = 1) and a reason naming the
column and the value, the other rows load; a file that cannot be used at all (missing column,
empty, unreadable) raises one ReferenceDataError naming the file and the problem."""

import pytest

from evcharging.reference.datasets import STATIONS, VEHICLES
from evcharging.reference.stations import STATION_COLUMNS
from evcharging.reference.table import ReferenceDataError, RejectedRow, rejected_rows_markdown
from evcharging.reference.vehicles import VEHICLE_COLUMNS
from evcharging_tests.reference.rows import GOOD_STATION, GOOD_VEHICLE, line, station, vehicle


@pytest.fixture
def broken_stations(write_csv):
    return write_csv("stations.csv", [
        line(STATION_COLUMNS),                                                                  # 1
        station(),                                                                              # 2 good
        station({"Station ID": "EVS00002", "Latitude": "north"}),                               # 3
        station({"Station ID": "EVS00003", "Latitude": "95"}),                                  # 4
        station({"Station ID": "EVS00004", "Charger Type": "AC Level 3"}),                      # 5
        station({"Station ID": "EVS00005", "Parking Spots": "-2"}),                             # 6
        station(),                                                                              # 7 duplicate id
        line(list(GOOD_STATION.values())[:-1]),                                                 # 8 16 fields
        station({"Station ID": "EVS00007", "Address": "12 Main St,\r\nBerlin"}),                # 9-10 good
        station({"Station ID": "EVS00008", "Reviews (Rating)": "7"}),                           # 11
        station({"Station ID": "EVS00009", "Cost (USD/kWh)": " 0.3 "}),                         # 12 good: blanks around a value
    ])  # fmt: skip


def test_each_broken_station_row_is_reported_with_line_and_reason(broken_stations):
    prepared = STATIONS.prepare(broken_stations)
    by_line = {row.line: row.reason for row in prepared.rejected}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 11]
    assert by_line[3] == "Latitude 'north' is not a number"
    assert by_line[4] == "Latitude 95.0 is outside -90..90"
    assert by_line[5] == "Charger Type 'AC Level 3' is not one of AC Level 1, AC Level 2, DC Fast Charger"
    assert by_line[6] == "Parking Spots -2 is outside 1..1000"
    assert by_line[7] == "Station ID 'EVS00001' repeats an earlier row"
    assert by_line[8] == "has 16 fields, expected 17"
    assert by_line[11] == "Reviews (Rating) 7.0 is outside 0..5"


def test_the_good_station_rows_load_and_only_they(broken_stations):
    prepared = STATIONS.prepare(broken_stations)
    assert [d["_id"] for d in prepared.documents] == ["EVS00001", "EVS00007", "EVS00009"]
    assert prepared.documents[1]["city"] == "Berlin"


def test_a_row_with_several_problems_names_them_all(write_csv):
    path = write_csv("stations.csv", [
        line(STATION_COLUMNS), station(),
        station({"Station ID": "EVS00002", "Longitude": "200", "Renewable Energy Source": "Maybe"}),
    ])  # fmt: skip
    [rejected] = STATIONS.prepare(path).rejected
    assert rejected == RejectedRow(3, "Longitude 200.0 is outside -180..180; Renewable Energy Source 'Maybe' is not one of Yes, No")


def test_each_broken_vehicle_row_is_reported_and_na_is_not_an_error(write_csv):
    path = write_csv("vehicles.csv", [
        line(VEHICLE_COLUMNS),                                                                  # 1
        vehicle(),                                                                              # 2 good
        vehicle(Car_name="", Car_name_link="https://ev-database.org/car/2/X"),                  # 3
        vehicle(Battery="lots", Car_name_link="https://ev-database.org/car/3/Y"),               # 4
        vehicle(Car_name="Tesla Model 3 Copy"),                                                 # 5 duplicate link
        line(list(GOOD_VEHICLE.values()) + ["extra"]),                                          # 6 10 fields
        vehicle(Car_name="Renault Twingo Electric", Car_name_link="https://ev-database.org/car/1270/T",
                Fast_charge="NA", **{"Price.DE.": "NA"}),                                       # 7 good
        vehicle(Car_name="Mystery", Car_name_link="https://ev-database.org/car/9/M", Efficiency="NA"),  # 8
        vehicle(Car_name="Odd", Car_name_link="https://example.com/odd"),                       # 9
    ])  # fmt: skip
    prepared = VEHICLES.prepare(path)
    assert {r.line: r.reason for r in prepared.rejected} == {
        3: "Car_name is missing",
        4: "Battery 'lots' is not a number",
        5: "Car_name_link 'https://ev-database.org/car/1991/Tesla-Model-3' repeats an earlier row",
        6: "has 10 fields, expected 9",
        8: "Efficiency is missing",
        9: "Car_name_link 'https://example.com/odd' is not an ev-database.org/car/<id>/ link",
    }
    assert [d["_id"] for d in prepared.documents] == ["tesla-model-3", "renault-twingo-electric"]
    twingo = prepared.documents[1]
    assert twingo["fast_charge_km_per_h"] is None and twingo["dc_max_kw"] is None and twingo["price_eur"] is None


def test_a_missing_column_is_one_clear_error(write_csv):
    columns = [c for c in STATION_COLUMNS if c != "Charger Type"]
    path = write_csv("stations.csv", [line(columns), line(GOOD_STATION[c] for c in columns)])
    with pytest.raises(ReferenceDataError) as error:
        STATIONS.prepare(path)
    assert str(path) in str(error.value) and "'Charger Type' missing" in str(error.value)


def test_the_vehicles_file_is_not_a_stations_file(kaggle_vehicles_csv):
    with pytest.raises(ReferenceDataError, match="not a stations file: column.*'Station ID'"):
        STATIONS.prepare(kaggle_vehicles_csv)


@pytest.mark.parametrize(
    "content, problem",
    [(b"", "the file is empty"), (b"\r\n\r\n", "the file is empty"),
     (",".join(VEHICLE_COLUMNS).encode() + b"\r\n", "header but no data rows"),
     (b"\xff\xfe\x00B\x00a\x00t", "cannot be read as a UTF-8 CSV file")],
)  # fmt: skip
def test_an_empty_or_unreadable_file_is_one_clear_error(tmp_path, content, problem):
    path = tmp_path / "vehicles.csv"
    path.write_bytes(content)
    with pytest.raises(ReferenceDataError, match=problem) as error:
        VEHICLES.prepare(path)
    assert str(path) in str(error.value)


def test_a_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(ReferenceDataError, match="file not found"):
        VEHICLES.prepare(tmp_path / "nope.csv")


def test_a_file_where_every_row_is_bad_is_an_error_not_an_empty_collection(write_csv):
    path = write_csv("vehicles.csv", [line(VEHICLE_COLUMNS), vehicle(Battery="x")])
    with pytest.raises(ReferenceDataError, match="all 1 rows rejected .*line 2: Battery 'x' is not a number"):
        VEHICLES.prepare(path)


def test_rejected_rows_render_as_a_markdown_table():
    rows = [RejectedRow(3, "Address 'a | b' is odd")] + [RejectedRow(n, "bad") for n in range(4, 30)]
    table = rejected_rows_markdown(rows, limit=2).splitlines()
    assert table == ["| line | reason |", "|---:|---|", "| 3 | Address 'a \\| b' is odd |", "| 4 | bad |", "| … | 25 more |"]
    assert rejected_rows_markdown([]) == "No rejected rows."


def test_broken_quoting_costs_the_record_not_the_file(write_csv):
    path = write_csv("vehicles.csv", [
        line(VEHICLE_COLUMNS), vehicle(),                                                       # 1, 2
        '60,"Broken "quote" car,https://ev-database.org/car/5/B,150,500,30000,300,150,8',       # 3
        vehicle(Car_name="After", Car_name_link="https://ev-database.org/car/6/A"),             # 4
        '60,"Unterminated,https://ev-database.org/car/7/U,150,500,30000,300,150,8',             # 5 (to the end)
        vehicle(Car_name="Swallowed", Car_name_link="https://ev-database.org/car/8/S"),         # 6
    ])  # fmt: skip
    prepared = VEHICLES.prepare(path)
    assert [d["name"] for d in prepared.documents] == ["Tesla Model 3", "After"]
    assert [(r.line, r.reason.split(":")[0]) for r in prepared.rejected] == [
        (3, "malformed CSV quoting in line 3"), (5, "malformed CSV quoting in lines 5-6"),
    ]  # fmt: skip
