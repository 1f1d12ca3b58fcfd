"""The audit's "no event already on main" lookup: the batch-sized lookup beside the full read of main.

Makes a throw-away lakeFS repository whose main holds ``--files`` lake Parquet files of one event
date, as the stream leaves them after a while (``--files-per-batch`` files per 5-s batch, each
batch a further minute of simulated time). The same rows are committed twice, on two branches
used as "main": once with event_time as INT96 (Spark's default: no statistics) and once as
TIMESTAMP_MICROS (``spark.sql.parquet.outputTimestampType``: min/max in every footer).

The audited batch is the next one: ``--batch-events`` new events just after main's last minute,
plus ``--duplicates`` events copied from an earlier file (a replay). For each encoding it times

* **old** — ``event_ids_on_main``: list main's files of the batch's dates, read every event_id;
* **new, cold** — ``batch_ids_on_main`` knowing nothing of main's files: one listing, every file
  opened in parallel (footer; for INT96 also the event_time column), event_id, session_id and seq
  read only where the event_time range overlaps the batch (ids and readings are looked up at once),
  only the rows of the batch's ids and readings kept;
* **new, warm** — the same with the files' time spans an earlier audit learned (the SQLite store
  ``ingest_batch`` keeps): only files in the batch's time range are opened;

checks all find the same duplicates, and prints old/new as ratios. The repository (and its
objects in MinIO) is deleted afterwards.

    python bench/bench_audit.py --files 300 --rows-per-file 10000
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from evcharging.contracts import CONTRACT_VERSION, FIELDS, LAKE_EVENTS_PATH  # noqa: E402
from evcharging.lake.ingest import event_ids_on_main  # noqa: E402
from evcharging.lake.main_ids import FileTimes, SqliteFileTimes, batch_ids_on_main  # noqa: E402
from evcharging.resources.from_settings import drop_repository, scratch_repository  # noqa: E402
from evcharging.resources.lakefs import LakeFSResource  # noqa: E402
from evcharging.settings import PROJECT_DIR, load_settings  # noqa: E402

DATE = "2026-01-05"
START_MS = int(datetime(2026, 1, 5, 6, tzinfo=UTC).timestamp() * 1000)
BATCH_SIM_MS = 60_000  # simulated time one stream batch covers
ENCODINGS = {"int96": {"use_deprecated_int96_timestamps": True}, "micros": {}}
_ARROW = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "timestamp": pa.timestamp("us", tz="UTC")}
LAKE_SCHEMA = pa.schema([(f.name, _ARROW[f.kind]) for f in FIELDS]
                        + [("kafka_partition", pa.int32()), ("kafka_offset", pa.int64())])


def random_ids(rng: np.random.Generator, n: int) -> list[str]:
    text = rng.bytes(16 * n).hex()
    return [text[i:i + 32] for i in range(0, 32 * n, 32)]


def lake_rows(rng: np.random.Generator, n: int, lo_ms: int, hi_ms: int, first_offset: int) -> pa.Table:
    """``n`` lake rows with random ids at times in [lo_ms, hi_ms), in time order like a stream file."""
    times = np.sort(rng.integers(lo_ms, hi_ms, n))
    seq = rng.integers(0, 600, n)
    session = [f"bench-{s:07d}" for s in rng.integers(0, 50_000, n)]
    columns = {
        "contract_version": pa.array(np.full(n, CONTRACT_VERSION)),
        "event_id": pa.array(random_ids(rng, n)),
        "event_type": pa.array(np.where(seq == 0, "session_started", "charging_progress")),
        "run_id": pa.array(["bench"] * n), "session_id": pa.array(session), "seq": pa.array(seq),
        "event_time": pa.array(times * 1000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "station_id": pa.array([f"EVS{s:05d}" for s in rng.integers(1, 5000, n)]),
        "charger_id": pa.array(["EVS00001-1"] * n), "vehicle_id": pa.array(["V000001"] * n),
        "vehicle_model_id": pa.array(["tesla-model-3"] * n), "connector_type": pa.array(["CCS"] * n),
        "power_kw": pa.array(rng.random(n) * 150), "energy_kwh": pa.array(rng.random(n) * 60),
        "soc_pct": pa.array(rng.random(n) * 100), "wait_s": pa.array(np.zeros(n)),
        "end_reason": pa.nulls(n, pa.string()),
        "kafka_partition": pa.array(np.zeros(n, dtype="int32")), "kafka_offset": pa.array(np.arange(n) + first_offset),
    }
    return pa.table(columns, schema=LAKE_SCHEMA)


def parquet_bytes(table: pa.Table, encoding: str) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", **ENCODINGS[encoding])
    return buffer.getvalue()


def fill_main(lakefs: LakeFSResource, tables: list[pa.Table], encoding: str) -> LakeFSResource:
    """Branch ``encoding`` of the repository holding ``tables`` as one date's files; returned as the
    resource whose "main" it is."""
    repo = lakefs.repo()
    branch = repo.branch(encoding).create(source_reference="main")

    def upload(item):
        i, table = item
        path = f"{LAKE_EVENTS_PATH}/event_date={DATE}/part-{i:05d}-{uuid.uuid4()}.c000.zstd.parquet"
        branch.object(path).upload(data=parquet_bytes(table, encoding), mode="wb")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, enumerate(tables)))
    branch.commit(message=f"bench: {len(tables)} files, event_time as {encoding}")
    return lakefs.with_repository(lakefs.repository, default_branch=encoding)


def timed(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300, help="Parquet files of one date on main")
    parser.add_argument("--rows-per-file", type=int, default=10_000)
    parser.add_argument("--files-per-batch", type=int, default=4, help="files one stream batch writes")
    parser.add_argument("--batch-events", type=int, default=64_000, help="new events in the audited batch")
    parser.add_argument("--duplicates", type=int, default=50, help="events of an earlier file the batch repeats")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the repository")
    args = parser.parse_args()

    settings = load_settings()
    rng = np.random.default_rng(7)
    batches = -(-args.files // args.files_per_batch)
    tables = []
    for i in range(args.files):
        window = START_MS + (i // args.files_per_batch) * BATCH_SIM_MS
        tables.append(lake_rows(rng, args.rows_per_file, window, window + BATCH_SIM_MS, i * args.rows_per_file))
    replayed = tables[max(0, args.files - 5 * args.files_per_batch)].slice(0, args.duplicates)
    new = lake_rows(rng, args.batch_events, START_MS + batches * BATCH_SIM_MS,
                    START_MS + (batches + 1) * BATCH_SIM_MS, 0)
    batch = pa.concat_tables([new, replayed]).to_pandas()
    batch["event_date"] = DATE
    expected = set(replayed.column("event_id").to_pylist())
    rows = args.files * args.rows_per_file
    print(f"main: {args.files} files of {DATE}, {rows:,} events; batch: {len(batch):,} events, "
          f"{len(expected)} of them already on main")

    name = f"bench-audit-{uuid.uuid4().hex[:8]}"
    lakefs = scratch_repository(settings, name)
    results = {"files": args.files, "rows_on_main": rows, "batch_events": len(batch), "duplicates": len(expected),
               "repeat": args.repeat, "encodings": {}}
    tmp = tempfile.mkdtemp(prefix="bench-audit-")
    try:
        for encoding in ENCODINGS:
            started = time.perf_counter()
            main_ref = fill_main(lakefs, tables, encoding)
            print(f"[{encoding}] wrote main in {time.perf_counter() - started:.1f} s")
            old_s, old_ids = timed(lambda: event_ids_on_main(main_ref, [DATE]), args.repeat)
            # cold: nothing known about main's files (a fresh store each time): every footer is read
            cold_s, cold = timed(lambda: batch_ids_on_main(main_ref, batch, FileTimes()), args.repeat)
            # warm: the spans learned by earlier audits (kept in SQLite, as ingest_batch does)
            store = SqliteFileTimes(Path(tmp) / f"{encoding}.sqlite3")
            batch_ids_on_main(main_ref, batch, store)
            warm_s, warm = timed(lambda: batch_ids_on_main(main_ref, batch, store), args.repeat)
            old_found = set(batch["event_id"]) & old_ids
            assert old_found == cold.ids == warm.ids == expected, (len(old_found), len(cold.ids), len(expected))
            results["encodings"][encoding] = {
                "old_s": round(old_s, 3),
                "new_cold_s": round(cold_s, 3), "cold_files_opened": cold.files_opened,
                "cold_files_read": cold.files_read,
                "new_warm_s": round(warm_s, 3), "warm_files_opened": warm.files_opened,
                "warm_files_read": warm.files_read,
                "files_listed": cold.files, "ratio_old_to_cold": round(old_s / cold_s, 1),
                "ratio_old_to_warm": round(old_s / warm_s, 1), "duplicates_found": len(cold.ids)}
            print(f"[{encoding}] old : {old_s:6.2f} s (all {len(old_ids):,} ids of the date)")
            print(f"[{encoding}] cold: {cold_s:6.2f} s ({cold.files_opened} of {cold.files} files opened, "
                  f"{cold.files_read} read) | old/cold = {old_s / cold_s:.1f}x")
            print(f"[{encoding}] warm: {warm_s:6.2f} s ({warm.files_opened} of {warm.files} files opened, "
                  f"{warm.files_read} read) | old/warm = {old_s / warm_s:.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not args.keep:
            drop_repository(settings, lakefs)
    out = PROJECT_DIR / "bench" / "results" / "audit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results → {out}")


if __name__ == "__main__":
    main()
