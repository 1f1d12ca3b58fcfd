"""The warehouse's event load names each lake file at the commit, on the gateway ClickHouse reaches."""

from types import SimpleNamespace

import pytest

from evcharging.warehouse.load import event_insert_sql

LAKEFS = SimpleNamespace(endpoint="http://127.0.0.1:8000", repository="evcharging", access_key_id="AKIA", secret_access_key="s3cr3t")
PATHS = ["events/event_date=2026-01-05/part-0.parquet", "events/event_date=2026-01-06/part-1.parquet"]


def test_one_s3_source_per_file_at_the_commit():
    sql = event_insert_sql("wh", LAKEFS, "c0ffee", PATHS)
    assert sql.count("s3(") == 2 and sql.count("UNION ALL") == 1
    assert "'http://127.0.0.1:8000/evcharging/c0ffee/events/event_date=2026-01-06/part-1.parquet'" in sql
    assert "'c0ffee' AS `load_commit`" in sql


def test_a_server_elsewhere_reads_lakefs_at_its_own_endpoint():
    sql = event_insert_sql("wh", LAKEFS, "c0ffee", PATHS, endpoint="http://lakefs:8000/")
    assert "'http://lakefs:8000/evcharging/c0ffee/events/" in sql and "127.0.0.1" not in sql


def test_glob_characters_in_a_path_are_refused():
    with pytest.raises(ValueError, match="glob"):
        event_insert_sql("wh", LAKEFS, "c0ffee", ["events/event_date=2026-01-05/part-{0,1}.parquet"])
