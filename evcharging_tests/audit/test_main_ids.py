"""The pieces of the "already on main" lookup that need no server: time intervals, Parquet
statistics of every timestamp encoding the lake may hold, and the file reader on local files."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from evcharging.lake.main_ids import (
    FileTimes,
    MainFile,
    SqliteFileTimes,
    batch_time_intervals,
    event_time_intervals,
    groups_in_range,
    ids_in_files,
    overlaps,
    statistics_spans,
    statistics_time_range,
    values_time_range,
)

T8 = datetime(2026, 1, 5, 8, tzinfo=UTC)
US8 = int(T8.timestamp() * 1_000_000)
MIN_US = 60_000_000


def _times(*minutes: float) -> list[datetime]:
    return [datetime.fromtimestamp(T8.timestamp() + m * 60, UTC) for m in minutes]


def _parquet(times: list[datetime], ids: list[str] | None = None, *, unit: str = "us", tz: str | None = "UTC",
             int96: bool = False, row_group_size: int | None = None) -> bytes:
    values = pa.array([t if tz else t.replace(tzinfo=None) for t in times], pa.timestamp(unit, tz=tz))
    ids = ids or [f"{i:032x}" for i in range(len(times))]
    buffer = io.BytesIO()
    pq.write_table(pa.table({"event_id": ids, "event_time": values}), buffer, use_deprecated_int96_timestamps=int96,
                   row_group_size=row_group_size)
    return buffer.getvalue()


def _metadata(data: bytes):
    return pq.ParquetFile(io.BytesIO(data)).metadata


def _time_column(data: bytes):
    return _metadata(data).row_group(0).column(1)


def test_intervals_cover_every_time_and_split_at_gaps():
    assert event_time_intervals([], 5) == []
    assert event_time_intervals([7, 1, 3, 3, 20, 24, 100], 5) == [(1, 7), (20, 24), (100, 100)]
    assert event_time_intervals([1, 6], 5) == [(1, 6)]  # a gap of exactly `gap` does not split


def test_batch_intervals_are_in_microseconds_and_widen_to_whole_ones():
    times = pd.Series(pd.to_datetime([T8, *_times(0.5, 30)], utc=True))
    assert batch_time_intervals(times) == [(US8, US8 + 30_000_000), (US8 + 30 * MIN_US, US8 + 30 * MIN_US)]
    sub_us = pd.Series([pd.Timestamp(T8) + pd.Timedelta(nanoseconds=1500)])
    assert batch_time_intervals(sub_us) == [(US8 + 1, US8 + 2)]


def test_overlaps_includes_both_ends():
    intervals = [(10, 20), (40, 50)]
    assert overlaps(intervals, 20, 30) and overlaps(intervals, 30, 40) and overlaps(intervals, 0, 100)
    assert overlaps(intervals, 12, 13)
    assert not overlaps(intervals, 21, 39) and not overlaps(intervals, 0, 9) and not overlaps(intervals, 51, 60)
    assert not overlaps([], 0, 100)


@pytest.mark.parametrize(("unit", "tz"), [("us", "UTC"), ("ms", "UTC"), ("ns", None), ("us", None)])
def test_footer_statistics_give_the_time_range_in_microseconds(unit, tz):
    column = _time_column(_parquet(_times(0, 5, 2), unit=unit, tz=tz))
    assert statistics_time_range(column) == (US8, US8 + 5 * MIN_US)


def test_int96_has_no_statistics_to_trust():  # how Spark writes timestamps unless told otherwise
    assert statistics_time_range(_time_column(_parquet(_times(0, 5), int96=True))) is None


def test_spans_per_row_group_and_none_without_statistics():
    data = _parquet(_times(0, 1, 10, 11, 20), row_group_size=2)
    assert statistics_spans(_metadata(data)) == [(0, US8, US8 + MIN_US), (1, US8 + 10 * MIN_US, US8 + 11 * MIN_US),
                                                 (2, US8 + 20 * MIN_US, US8 + 20 * MIN_US)]
    assert statistics_spans(_metadata(_parquet(_times(0, 1), int96=True))) == [None]
    assert groups_in_range([(0, 0, 10), (1, 20, 30), (2, 40, 50)], [(25, 41)]) == [1, 2]
    assert groups_in_range([(0, 0, 10), (1, 20, 30)], None) == [0, 1]


def test_values_time_range_reads_the_column_itself():
    assert values_time_range(pa.chunked_array([pa.array(_times(3, 1, 2), pa.timestamp("ms", tz="UTC"))])) == \
        (US8 + MIN_US, US8 + 3 * MIN_US)
    assert values_time_range(pa.nulls(3, pa.timestamp("us"))) is None


@pytest.fixture
def lake(tmp_path):
    """Write Parquet files to a local directory; returns (writer, filesystem)."""
    fs = pafs.LocalFileSystem()

    def write(name: str, data: bytes) -> MainFile:
        path = tmp_path / name
        path.write_bytes(data)
        return MainFile(str(path), len(data), f"{name}#{len(data)}")

    return write, fs


@pytest.mark.parametrize("int96", [False, True])
def test_only_files_in_the_batch_time_range_are_read_and_ids_are_exact(lake, int96):
    write, fs = lake
    early = write("early.parquet", _parquet(_times(0, 1, 2), ["a0", "a1", "a2"], int96=int96))
    late = write("late.parquet", _parquet(_times(600, 601), ["b0", "b1"], int96=int96))
    store = FileTimes()
    batch_ids = ["a1", "new1", "b0-not-here"]
    intervals = [(US8 + MIN_US, US8 + MIN_US), (US8 + 300 * MIN_US, US8 + 301 * MIN_US)]
    first = ids_in_files(fs, [early, late], batch_ids, intervals, store)
    assert first.ids == {"a1"} and first.files == 2 and first.files_opened == 2 and first.files_read == 1
    # The spans are learned (from statistics, or from the INT96 column): next time `late` stays shut.
    assert store.get([early.key, late.key]) == {early.key: [(0, US8, US8 + 2 * MIN_US)],
                                                late.key: [(0, US8 + 600 * MIN_US, US8 + 601 * MIN_US)]}
    again = ids_in_files(fs, [early, late], batch_ids, intervals, store)
    assert again.ids == {"a1"} and again.files_opened == 1 and again.files_read == 1


def test_an_id_repeated_at_its_own_time_is_found_in_any_overlapping_row_group(lake):
    write, fs = lake
    files = [write(f"f{i}.parquet", _parquet(_times(10 * i, 10 * i + 5), [f"x{i}", f"y{i}"], row_group_size=1))
             for i in range(5)]
    found = ids_in_files(fs, files, ["y3", "x0", "z"], [(US8, US8), (US8 + 35 * MIN_US, US8 + 35 * MIN_US)])
    assert found.ids == {"x0", "y3"} and found.files_read == 2


def test_batch_of_unknown_times_reads_everything(lake):
    write, fs = lake
    files = [write("a.parquet", _parquet(_times(0), ["a"])), write("b.parquet", _parquet(_times(900), ["b"]))]
    found = ids_in_files(fs, files, ["a", "b"], None)
    assert found.ids == {"a", "b"} and found.files_read == 2


def test_sqlite_store_keeps_spans_between_processes_and_ignores_a_broken_file(tmp_path):
    path = tmp_path / "audit" / "times.sqlite3"
    SqliteFileTimes(path).put({"k1": [(0, 1, 2), (1, 3, 4)], "k2": []})
    assert SqliteFileTimes(path).get(["k1", "k2", "k3"]) == {"k1": [(0, 1, 2), (1, 3, 4)], "k2": []}
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"not a database" * 100)
    assert SqliteFileTimes(broken).get(["k1"]) == {}
    SqliteFileTimes(broken).put({"k1": [(0, 1, 2)]})  # no error: the lookup works without the store


def test_a_reading_under_another_id_is_found_in_the_batch_time_range_only(lake):
    """Main's row of a reading (session_id, seq) re-sent under a new event id comes back with the
    rows of repeated ids, and only from the row groups the batch's times reach."""
    write, fs = lake
    times = _times(0, 1, 600)
    table = pa.table({"event_id": ["a0", "a1", "b0"], "session_id": ["s1", "s1", "s2"], "seq": [0, 1, 0],
                      "event_time": pa.array(times, pa.timestamp("us", tz="UTC"))})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=2)
    main = write("main.parquet", buffer.getvalue())
    near = [(US8, US8 + MIN_US)]
    found = ids_in_files(fs, [main], ["new-id"], near, batch_readings=["s1\x1f1", "s2\x1f0"])
    assert found.ids == set()  # none of the batch's own ids is on main …
    assert list(found.rows["event_id"]) == ["a1"]  # … but a1 holds its reading; s2's row group is out of range
    assert ids_in_files(fs, [main], ["a0"], near, batch_readings=["s1\x1f1"]).ids == {"a0"}
    assert ids_in_files(fs, [main], ["new-id"], None, batch_readings=["s2\x1f0"]).rows["event_id"].tolist() == ["b0"]


def test_rows_found_in_files_with_and_without_a_time_zone_come_back_together(lake):
    """Spark's INT96 files read without a time zone, the audit's rewrites with UTC: one frame of both."""
    write, fs = lake
    files = [write("spark.parquet", _parquet(_times(0), ["a"], tz=None, int96=True)),
             write("rewrite.parquet", _parquet(_times(1), ["b"]))]
    found = ids_in_files(fs, files, ["a", "b"], None)
    assert sorted(found.rows["event_id"]) == ["a", "b"] and str(found.rows["event_time"].dt.tz) == "UTC"
