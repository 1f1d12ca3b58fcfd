"""A reference reload that looks like a broken source is refused with a clear error and changes
nothing: too many rejected rows, or too many stored documents it would remove. Within the limits
it goes ahead (and the warehouse dimension keeps what left the source, marked retired)."""

from __future__ import annotations

import dagster as dg
import pymongo
import pytest

from evcharging.defs.reference.assets import stations
from evcharging.reference.store import reload_refusal
from evcharging.reference.stations import STATION_COLUMNS
from evcharging.resources.mongo import MongoResource
from evcharging_tests.reference.rows import line, station


@pytest.mark.parametrize("valid, rejected, stored, removed, refused", [
    (4990, 10, 5000, 10, None),
    (10, 4990, 5000, 4990, "4990 of 5000 rows of src were rejected"),
    (2500, 0, 5000, 2500, "would remove 2500 of the 5000 stored documents"),
    (5, 0, 0, 0, None),  # a first load removes nothing
])
def test_reload_refusal(valid, rejected, stored, removed, refused):
    reason = reload_refusal("stations", "src", valid, rejected, stored, removed, 0.1, 0.1)
    assert reason is None if refused is None else refused in reason


def _materialize(mongo, csv_path=None, rows=None):
    config = {"csv_path": str(csv_path)} if csv_path else {"synthetic_rows": rows}
    return dg.materialize([stations], resources={"mongo": mongo}, raise_on_error=False,
                          run_config={"ops": {stations.op.name: {"config": config}}})


@pytest.mark.integration
def test_a_bad_reload_is_refused_and_changes_nothing(stack_settings, unique_name, write_csv, monkeypatch):
    monkeypatch.delenv("EVCHARGING_STATIONS_CSV", raising=False)  # CI points it at the Kaggle file: use the generator
    mongo = MongoResource(url=stack_settings.mongo_url, database=f"evc_guard_{unique_name}")
    with pymongo.MongoClient(mongo.url, serverSelectionTimeoutMS=5000) as client:
        collection = client[mongo.database]["stations"]
        try:
            assert _materialize(mongo, rows=20).success
            before = sorted(collection.find({}), key=lambda d: d["_id"])

            # 9 of 10 rows rejected: refused, nothing removed.
            broken = write_csv("stations.csv", [line(STATION_COLUMNS), station()] + [
                station({"Station ID": f"EVS0010{i}", "Latitude": "x"}) for i in range(9)])
            result = _materialize(mongo, csv_path=broken)
            assert not result.success
            [failure] = [e for e in result.all_events if e.is_step_failure]
            message = failure.step_failure_data.error.message
            assert "9 of 10 rows" in message and "EVCHARGING_REFERENCE_MAX_REJECTED_SHARE=0.1" in message
            assert sorted(collection.find({}), key=lambda d: d["_id"]) == before

            # A valid source of 15 rows would remove 5 of 20 (25 %): refused, until the operator allows it.
            assert not _materialize(mongo, rows=15).success
            assert collection.count_documents({}) == 20
            monkeypatch.setenv("EVCHARGING_REFERENCE_MAX_REMOVED_SHARE", "0.3")
            assert _materialize(mongo, rows=15).success
            assert collection.count_documents({}) == 15
        finally:
            client.drop_database(mongo.database)
