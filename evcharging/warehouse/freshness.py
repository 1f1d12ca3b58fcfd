"""How far the warehouse trails the lake, in event time: newest event on main vs newest in ClickHouse.

ClickHouse holds everything of main up to the commit it loaded, so main's newest event is the
newer of ClickHouse's and the newest in the files main gained since that commit; those come from
Parquet footer statistics (the stream writes TIMESTAMP_MICROS with min/max), no data is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from evcharging.lake.ingest import arrow_filesystem
from evcharging.lake.main import added_event_files
from evcharging.lake.main_ids import statistics_spans
from evcharging.resources.lakefs import LakeFSResource


@dataclass(frozen=True)
class WarehouseLag:
    newest_on_main_us: int | None
    newest_in_warehouse_us: int | None

    @property
    def seconds(self) -> float:
        if self.newest_on_main_us is None or self.newest_in_warehouse_us is None:
            return 0.0
        return max(0, self.newest_on_main_us - self.newest_in_warehouse_us) / 1e6

    def metadata(self) -> dict:
        def iso(us: int | None) -> str:
            return "none" if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds")

        return {"newest_event_on_main": iso(self.newest_on_main_us),
                "newest_event_in_clickhouse": iso(self.newest_in_warehouse_us),
                "main_to_clickhouse_lag_seconds": round(self.seconds, 3)}


def newest_in_files(lakefs: LakeFSResource, ref: str, paths: list[str]) -> int | None:
    """The largest event_time (µs) in the files' footer statistics; None without any."""
    import pyarrow.parquet as pq

    fs = arrow_filesystem(lakefs)
    ends = []
    for path in paths:
        with fs.open_input_file(f"{lakefs.repository}/{ref}/{path}") as handle:
            ends += [span[2] for span in statistics_spans(pq.ParquetFile(handle).metadata) if span is not None]
    return max(ends, default=None)


def newest_in_warehouse(wh, database: str) -> int | None:
    """The newest event time loaded (µs), as the loads recorded it: the fact's max would read the whole table."""
    from evcharging.warehouse.load import loaded_totals

    return loaded_totals(wh, database)[1]


def warehouse_lag(wh, database: str, lakefs: LakeFSResource, loaded_commit: str) -> WarehouseLag:
    """The lag now: main's head may have moved on since ``loaded_commit`` (what the warehouse holds)."""
    in_warehouse = newest_in_warehouse(wh, database)
    head = lakefs.repo().branch(lakefs.default_branch).get_commit().id
    added = added_event_files(lakefs.repo(), loaded_commit, head) if head != loaded_commit else []
    newest_added = newest_in_files(lakefs, head, added)
    known = [v for v in (in_warehouse, newest_added) if v is not None]
    return WarehouseLag(max(known, default=None), in_warehouse)
