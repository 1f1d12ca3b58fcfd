"""The audit's "already on main" lookup on the real lakeFS, with files the real stream writer wrote.

Main gets two published batches: one at 08:00 (plus a session across midnight, so files in two
event_date directories) and one at 20:00. A new batch repeating events of the first is caught,
in both date directories, without reading the 20:00 files; a batch far from both in time reads
no file and finds nothing; a batch repeating the 20:00 events is caught, and so are the same
readings (session_id, seq) under new event ids, from the same files. A repeat cannot sit in a
date directory other than its original's: event_date is derived from event_time, which a repeat
shares (the simulator is deterministic), and the lookup takes the batch's dates from its times.

Run once with event_time as INT96 (Spark's default: no footer statistics, so the time spans are
learned from the column) and once as TIMESTAMP_MICROS (spans from the footers).
"""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow.parquet as pq
import pytest

from evcharging.lake import ingest, main_ids
from evcharging.resources.from_settings import drop_repository, scratch_repository
from evcharging.resources.lakefs import LakeFSResource
from evcharging.streaming.batches import IngestBatchWriter, branch_name
from evcharging_tests.factories import T0_MS, session_events

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
STREAM = "audit"


@pytest.fixture
def lake(stack_settings, unique_name):
    """A lakeFS repository of this test's own (deleted afterwards, with its objects in MinIO)."""
    lakefs = scratch_repository(stack_settings, f"audit-{unique_name}")
    yield lakefs
    drop_repository(stack_settings, lakefs)


def _write(spark, lakefs: LakeFSResource, batch_id: int, values: list[bytes]) -> str:
    rows = [(b"k", v, "audit-topic", 0, batch_id * 1000 + i, datetime(2026, 1, 5)) for i, v in enumerate(values)]
    records = spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset long, "
                                          "timestamp timestamp")
    IngestBatchWriter(lakefs, STREAM, "audit-topic").write(records, batch_id)
    return branch_name(STREAM, batch_id)


def _publish(lakefs: LakeFSResource, branch: str) -> set[str]:
    """Merge an ingest branch into main; the paths of the files it added."""
    commit = ingest.ingest_commit(lakefs, branch)
    added = set(ingest.batch_event_files(lakefs, commit))
    ingest.publish(lakefs, commit, {"test": "audit-main-ids"})
    return added


def _batch(lakefs: LakeFSResource, branch: str):
    """The batch's events as ingest_batch reads them."""
    commit = ingest.ingest_commit(lakefs, branch)
    return ingest.read_events(lakefs, commit.commit_id, ingest.batch_event_files(lakefs, commit))


def _ids(values: list[bytes]) -> set[str]:
    return {json.loads(v)["event_id"] for v in values}


@pytest.mark.parametrize("timestamps", ["INT96", "TIMESTAMP_MICROS"])
def test_repeats_are_caught_and_only_files_in_the_batch_time_range_are_read(spark, lake, unique_name, timestamps):
    run = f"run-{unique_name}"
    morning = session_events(run, "morning", n=5)  # 08:00 … 08:04
    midnight = session_events(run, "midnight", n=5, start_ms=T0_MS + 16 * HOUR_MS - 2 * 60_000)  # 23:58 … 00:02
    evening = session_events(run, "evening", n=5, start_ms=T0_MS + 12 * HOUR_MS)  # 20:00 … 20:04

    previous = spark.conf.get("spark.sql.parquet.outputTimestampType")
    spark.conf.set("spark.sql.parquet.outputTimestampType", timestamps)
    try:
        first = _publish(lake, _write(spark, lake, 0, morning + midnight))
        second = _publish(lake, _write(spark, lake, 1, evening))
        repeats = _write(spark, lake, 2, morning[1:3] + [midnight[1], midnight[3]]
                         + session_events(run, "later", n=3, start_ms=T0_MS + 3 * 60_000))
        far_away = _write(spark, lake, 3, session_events(run, "afternoon", n=3, start_ms=T0_MS + 6 * HOUR_MS))
        evening_again = _write(spark, lake, 4, evening[2:4])
        # the same readings under new event ids, as a producer that makes new ids on retry sends them
        evening_resent = _write(spark, lake, 5, [json.dumps({**json.loads(v), "event_id": f"{i:032x}"}).encode()
                                                 for i, v in enumerate(evening[2:4])])
    finally:
        spark.conf.set("spark.sql.parquet.outputTimestampType", previous)

    # The stream wrote what this case is about: INT96 without statistics, or INT64 with them.
    main_files = main_ids.main_files(lake, "main", ["2026-01-05", "2026-01-06"])
    assert {f.path.split("/", 2)[2] for f in main_files} == first | second
    assert {p.split("/")[1] for p in first} == {"event_date=2026-01-05", "event_date=2026-01-06"}
    with ingest.arrow_filesystem(lake).open_input_file(main_files[0].path) as source:
        footer = pq.ParquetFile(source).metadata
    column = footer.row_group(0).column(footer.schema.names.index("event_time"))
    assert column.physical_type == ("INT96" if timestamps == "INT96" else "INT64")

    times = main_ids.FileTimes()
    found = main_ids.batch_ids_on_main(lake, _batch(lake, repeats), times)
    assert found.ids == _ids(morning[1:3] + [midnight[1], midnight[3]])  # in both date directories
    assert found.files == len(first | second)
    assert found.files_opened == found.files  # nothing known yet: every footer
    assert 1 <= found.files_read <= len(first)  # the 20:00 files were ruled out by their times

    again = main_ids.batch_ids_on_main(lake, _batch(lake, repeats), times)
    assert again.ids == found.ids and again.files_opened == again.files_read == found.files_read

    nothing = main_ids.batch_ids_on_main(lake, _batch(lake, far_away), times)
    assert nothing.ids == set() and nothing.files == sum("2026-01-05" in p for p in first | second)
    assert nothing.files_opened == nothing.files_read == 0

    evening_found = main_ids.batch_ids_on_main(lake, _batch(lake, evening_again), times)
    assert evening_found.ids == _ids(evening[2:4])
    assert 1 <= evening_found.files_read <= len(second)

    # Readings under new ids: none of the batch's ids is on main, but main's rows of its readings come
    # back, from the same files in the batch's time range only (the morning's are not read).
    by_reading = main_ids.batch_ids_on_main(lake, _batch(lake, evening_resent), times)
    assert by_reading.ids == set() and set(by_reading.rows["event_id"]) == _ids(evening[2:4])
    assert 1 <= by_reading.files_read <= len(second)

    # The audit's verdict on the repeats, as ingest_batch reaches it.
    from evcharging.audit.checks import check_not_on_main

    outcome = check_not_on_main(_batch(lake, repeats), found.ids)
    assert not outcome.passed and "4 event ids already on main" in outcome.description
