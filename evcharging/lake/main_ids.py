"""Which of a batch's event ids and readings main already holds, at a cost that follows the batch, not main.

A repeated event id is the same (run, session, seq), and the simulator is deterministic (a re-run
of the same settings gives every event id the same event_time), so a repeat has its original's
event_time, hence its event_date: only main's files of the batch's dates can hold it, and of those
only row groups whose event_time range overlaps the batch's times. A reading ``(session_id, seq)``
re-sent under another event id has its original's event_time too (only the id differs), so the
same row groups are searched for it, in the same pass. The ranges come from Parquet
footer statistics (TIMESTAMP_MICROS) or, where there are none (INT96, older files), from the
event_time column itself, read once per file: either way they are learned once per file and kept
in a ``FileTimes`` store keyed by the object's identity (lakeFS never rewrites an object in place),
so an audit lists main's files and opens only the new ones and those in the batch's time range.

Not looked for: a reading on main whose conflicting copy in the batch has another event_time
outside every row group the batch's times reach (both readings are kept; the session's sequence
shows it). And a run id given explicitly (``--run-id``) and reused with other settings gives the
same ids to different events at other times; that is an id collision, not a repeat (the full read
of main's dates this replaces caught it only when both fell on the same date).
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass, field

import pandas as pd

from evcharging.audit.copies import READING, reading_keys
from evcharging.contracts import LAKE_EVENTS_PATH
from evcharging.lake.ingest import arrow_filesystem
from evcharging.resources.lakefs import LakeFSResource

MAIN_READ_THREADS = 16  # files read at once: each read is a round trip to the S3 gateway
TIME_GAP_US = 60_000_000  # batch event times further apart than a minute form separate intervals
_LIST_PAGE = 1000  # lakeFS's largest listing page

Span = tuple[int, int, int]  # (row group, first, last event_time) in µs since the epoch


@dataclass(frozen=True)
class MainFile:
    path: str  # <repository>/<commit>/<path>, for the S3 gateway
    size: int
    key: str  # the object's identity: physical address, checksum and size


@dataclass(frozen=True)
class MainClashes:
    """The batch's event ids that main already holds, their rows there (also those holding one of the
    batch's readings under another id), and what finding them cost."""

    ids: set[str]
    files: int  # main's Parquet files on the batch's event dates
    files_opened: int  # files whose footer was read: new to the store, or in the batch's time range
    files_read: int  # files whose event_id column was read (in the batch's time range, or of unknown range)
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)  # main's rows of those ids and readings (to compare)


class FileTimes:
    """Event-time spans of lake files by object identity, in memory (the default: nothing persists)."""

    def __init__(self):
        self._spans: dict[str, list[Span]] = {}

    def get(self, keys: list[str]) -> dict[str, list[Span]]:
        return {k: self._spans[k] for k in keys if k in self._spans}

    def put(self, spans: dict[str, list[Span]]) -> None:
        self._spans.update(spans)


class SqliteFileTimes(FileTimes):
    """Spans kept in a SQLite file, so that every audit process shares what earlier ones learned.

    A store that cannot be read or written is treated as empty: it only saves reads, the lookup is
    exact without it. Entries older than ``keep_days`` are dropped (their files are re-read once).
    """

    def __init__(self, path, keep_days: float = 14):
        from pathlib import Path

        self.path, self.keep_s = Path(path), keep_days * 86_400

    def _connect(self):
        import sqlite3

        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("CREATE TABLE IF NOT EXISTS file_times "
                   "(key TEXT PRIMARY KEY, spans TEXT NOT NULL, added REAL NOT NULL)")
        return db

    def get(self, keys: list[str]) -> dict[str, list[Span]]:
        import sqlite3

        found: dict[str, list[Span]] = {}
        try:
            with closing(self._connect()) as db:
                for i in range(0, len(keys), 500):
                    chunk = keys[i:i + 500]
                    rows = db.execute(f"SELECT key, spans FROM file_times WHERE key IN ({','.join('?' * len(chunk))})",
                                      chunk)
                    found.update({k: [tuple(s) for s in json.loads(v)] for k, v in rows})
        except (sqlite3.Error, OSError, ValueError):
            return {}
        return found

    def put(self, spans: dict[str, list[Span]]) -> None:
        import sqlite3
        import time

        if not spans:
            return
        now = time.time()
        try:
            with closing(self._connect()) as db, db:
                db.executemany("INSERT OR REPLACE INTO file_times VALUES (?, ?, ?)",
                               [(k, json.dumps(v), now) for k, v in spans.items()])
                db.execute("DELETE FROM file_times WHERE added < ?", (now - self.keep_s,))
        except (sqlite3.Error, OSError):
            pass


def event_time_intervals(times, gap: int) -> list[tuple[int, int]]:
    """Sorted disjoint inclusive [lo, hi] intervals covering every one of ``times`` (integers in one
    unit); times at most ``gap`` apart share an interval. A batch with a replayed stretch gets two."""
    import numpy as np

    values = np.unique(np.asarray(times, dtype="int64"))
    if not len(values):
        return []
    breaks = np.flatnonzero(np.diff(values) > gap)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(values) - 1]))
    return [(int(values[a]), int(values[b])) for a, b in zip(starts, ends, strict=True)]


def batch_time_intervals(times: pd.Series, gap_us: int = TIME_GAP_US) -> list[tuple[int, int]]:
    """:func:`event_time_intervals` of tz-aware pandas times, in µs, widened to whole µs."""
    ns = times.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64")
    return [(lo // 1000, -(-hi // 1000)) for lo, hi in event_time_intervals(ns, gap_us * 1000)]


def overlaps(intervals: list[tuple[int, int]], lo: int, hi: int) -> bool:
    """Whether [lo, hi] meets any of the sorted disjoint ``intervals``."""
    from bisect import bisect_left

    i = bisect_left(intervals, lo, key=lambda iv: iv[1])  # the first interval ending at or after lo
    return i < len(intervals) and intervals[i][0] <= hi


_TO_US = {"ms": (1000, 1), "us": (1, 1), "ns": (1, 1000)}  # unit → (multiply, divide)
_PARQUET_UNITS = {"milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns"}


def _to_us(lo: int, hi: int, unit: str) -> tuple[int, int]:
    mul, div = _TO_US[unit]
    return lo * mul // div, -(-hi * mul // div)


def statistics_time_range(column) -> tuple[int, int] | None:
    """[min, max] of a Parquet column chunk of timestamps in µs since the epoch (widened to whole µs),
    from its footer statistics; None when there are none it can trust.

    Spark writes INT96 by default, without statistics. A timestamp without time zone is taken as
    UTC, like everything this project writes.
    """
    stats = column.statistics
    if column.physical_type != "INT64" or stats is None or not stats.has_min_max:
        return None
    unit = None
    if stats.logical_type is not None and stats.logical_type.type == "TIMESTAMP":
        unit = _PARQUET_UNITS.get(json.loads(stats.logical_type.to_json()).get("timeUnit"))
    elif stats.converted_type in ("TIMESTAMP_MILLIS", "TIMESTAMP_MICROS"):
        unit = "ms" if stats.converted_type == "TIMESTAMP_MILLIS" else "us"
    if unit is None:
        return None
    return _to_us(int(stats.min_raw), int(stats.max_raw), unit)


def values_time_range(values) -> tuple[int, int] | None:
    """[min, max] of an Arrow timestamp array or chunked array in µs (widened); None if all null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_timestamp(values.type):
        return None
    bounds = pc.min_max(values.cast(pa.int64()))
    if not bounds["min"].is_valid:
        return None
    return _to_us(bounds["min"].as_py(), bounds["max"].as_py(), values.type.unit)


def statistics_spans(metadata, column: str = "event_time") -> list[Span | None]:
    """Per row group of a Parquet file (its ``FileMetaData``), its event_time span from the footer
    statistics, or None where they cannot tell."""
    names = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    if column not in names:
        return [None] * metadata.num_row_groups
    index = names.index(column)
    spans: list[Span | None] = []
    for g in range(metadata.num_row_groups):
        span = statistics_time_range(metadata.row_group(g).column(index))
        spans.append(None if span is None else (g, *span))
    return spans


def groups_in_range(spans: list[Span], intervals: list[tuple[int, int]] | None) -> list[int]:
    """Row groups whose span overlaps ``intervals`` (all of them when ``intervals`` is None)."""
    return [g for g, lo, hi in spans if intervals is None or overlaps(intervals, lo, hi)]


def utc_times(table):
    """``table`` with every timestamp column without a time zone marked UTC: Spark's INT96 files read
    without one, the audit's rewrites (which keep pyarrow's schema) with one, and rows of both kinds
    are concatenated. Everything this project writes is UTC."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.tz is None:
            table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp(f.type.unit, tz="UTC")))
    return table


def _wanted(table, ids, readings):
    """Which rows of ``table`` (an Arrow table with event_id, and session_id and seq when it has them)
    hold one of ``ids`` or one of ``readings`` (keys as :func:`evcharging.audit.copies.reading_keys`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = pc.fill_null(pc.is_in(table["event_id"].cast(pa.string()), value_set=ids), False)
    if readings is not None and len(readings) and set(READING) <= set(table.column_names):
        keys = pc.binary_join_element_wise(table["session_id"].cast(pa.string()), table["seq"].cast(pa.string()),
                                           "\x1f")
        mask = pc.or_(mask, pc.fill_null(pc.is_in(keys, value_set=readings), False))
    return mask


def ids_in_files(filesystem, files: list[MainFile], batch_ids, intervals: list[tuple[int, int]] | None,
                 times: FileTimes | None = None, threads: int = MAIN_READ_THREADS,
                 batch_readings=None) -> MainClashes:
    """Which of ``batch_ids`` (and of ``batch_readings``, reading keys) the Parquet ``files`` on
    ``filesystem`` hold.

    A file whose spans ``times`` knows, none overlapping ``intervals``, is not opened. Any other
    file is opened (its size from the listing spares a HEAD request): its spans come from the
    footer, or for row groups without statistics from reading event_time (once; then they are in
    ``times``), and event_id is read only for row groups that overlap. ``intervals`` None means the
    batch has events of unknown time: every row group is read. Only a row group holding one of the
    ids or readings is read whole, for their rows (copies are rare, and their content is compared).
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    wanted = pc.unique(pa.array(batch_ids, pa.string()))
    readings = pc.unique(pa.array(list(batch_readings), pa.string())) if batch_readings is not None else None
    if not len(wanted) or not files:
        return MainClashes(set(), len(files), 0, 0)
    times = times if times is not None else FileTimes()
    known = times.get([f.key for f in files])
    # files known to lie outside the batch's times are not even opened
    to_open = [f for f in files if f.key not in known or groups_in_range(known[f.key], intervals)]
    parquet = ds.ParquetFileFormat()

    def one(file: MainFile) -> tuple[pa.Table | None, bool, list[Span] | None]:
        spans = known.get(file.key)
        learned = None
        with parquet.make_fragment(file.path, filesystem=filesystem, file_size=file.size).open() as source:
            # pre_buffer: the key columns of a read (event_id, session_id, seq) come in one coalesced
            # request to the S3 gateway, not one round trip each
            reader = pq.ParquetFile(source, pre_buffer=True, coerce_int96_timestamp_unit="us")
            if spans is None:
                found = statistics_spans(reader.metadata)
                if intervals is not None:  # learn what the footer does not say from the column itself
                    for g, span in enumerate(found):
                        if span is None:
                            column = reader.read_row_group(g, columns=["event_time"], use_threads=False).column(0) \
                                if "event_time" in reader.schema_arrow.names else None
                            bounds = None if column is None else values_time_range(column)
                            found[g] = None if bounds is None else (g, *bounds)
                if all(span is not None for span in found):
                    spans = learned = found
            groups = list(range(reader.metadata.num_row_groups)) if spans is None else groups_in_range(spans, intervals)
            if not groups:
                return None, False, learned
            names = reader.schema_arrow.names
            key_columns = ["event_id", *(c for c in READING if readings is not None and c in names)]
            keys = reader.read_row_groups(groups, columns=key_columns, use_threads=False)
            if not pc.any(_wanted(keys, wanted, readings)).as_py():
                return None, True, learned
            rows = reader.read_row_groups(groups, use_threads=False)
        return rows.filter(_wanted(rows, wanted, readings)), True, learned

    found: list[pa.Table] = []
    read = 0
    learned_spans: dict[str, list[Span]] = {}
    if to_open:
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(to_open)))) as pool:
            for file, (rows, was_read, learned) in zip(to_open, pool.map(one, to_open), strict=True):
                if rows is not None:
                    found.append(rows)
                read += was_read
                if learned is not None:
                    learned_spans[file.key] = learned
    times.put(learned_spans)
    rows = pa.concat_tables([utc_times(t) for t in found], promote_options="permissive").to_pandas() \
        if found else pd.DataFrame()
    # main's rows found by reading may carry other ids: only the batch's own count as already on main
    ids = set(rows["event_id"].astype(str)) & set(wanted.to_pylist()) if len(rows) else set()
    return MainClashes(ids, len(files), len(to_open), read, rows)


def main_files(lakefs: LakeFSResource, ref: str, event_dates) -> list[MainFile]:
    """The Parquet files of ``ref`` under the given event dates: one lakeFS listing per date."""
    repo = lakefs.repo()
    return [MainFile(f"{lakefs.repository}/{ref}/{o.path}", o.size_bytes,
                     f"{o.physical_address}#{o.checksum}#{o.size_bytes}")
            for date in sorted(event_dates)
            for o in repo.ref(ref).objects(prefix=f"{LAKE_EVENTS_PATH}/event_date={date}/", amount=_LIST_PAGE)
            if o.path.endswith(".parquet")]


def batch_ids_on_main(lakefs: LakeFSResource, events: pd.DataFrame, times: FileTimes | None = None,
                      threads: int = MAIN_READ_THREADS) -> MainClashes:
    """The event ids of ``events`` (one batch, as :func:`read_events` gives it) that main already
    holds, exactly, and main's rows of them and of the batch's readings under other ids, reading
    main only where the batch's event times are (see above). ``times``
    keeps the files' time spans between calls; main is read at one commit, so a merge meanwhile
    cannot tear it.
    """
    if events.empty or "event_id" not in events:
        return MainClashes(set(), 0, 0, 0)
    batch_ids = events["event_id"].dropna().astype(str)
    event_times = pd.to_datetime(events["event_time"], utc=True, errors="coerce") if "event_time" in events \
        else pd.Series(pd.NaT, index=events.index, dtype="datetime64[ns, UTC]")
    dates = {d.date().isoformat() for d in event_times.dropna().dt.normalize().unique()}
    if "event_date" in events:
        dates |= {str(d) for d in events["event_date"].dropna().unique()}
    # An event without a readable time could repeat one at any time of its date: read all of it.
    intervals = None if event_times.isna().any() else batch_time_intervals(event_times)
    head = lakefs.repo().branch(lakefs.default_branch).get_commit().id
    readings = reading_keys(events).dropna()
    return ids_in_files(arrow_filesystem(lakefs), main_files(lakefs, head, dates), batch_ids, intervals, times, threads,
                        batch_readings=readings)
