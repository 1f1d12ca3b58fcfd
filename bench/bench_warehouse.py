"""Warehouse load throughput beside chDB's raw Parquet ingest of the same files, in the same run.

Writes N synthetic events (complete sessions of --events-per-session events) as lake Parquet on a
throw-away lakeFS branch, commits, then into two fresh chDB directories:

* **warehouse load** — ``load_lake_commit``: the lakeFS diff, Spark reading the added files,
  dedupe by event_id, the event fact, re-reading the touched sessions, sessionizing, the session
  fact, the load log;
* **raw ingest** — one ``INSERT … SELECT * FROM s3('<lakeFS gateway>/<commit>/events/**.parquet')``
  into a plain MergeTree: the physical baseline for the same bytes over the same gateway.

Prints rows/s of each and the ratio (target ≥ 50 %). The SparkSession is started before timing.

    python bench/bench_warehouse.py --events 500000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evcharging.contracts import CONTRACT_VERSION, LAKE_EVENTS_PATH  # noqa: E402
from evcharging.resources.from_settings import lakefs_resource  # noqa: E402
from evcharging.resources.spark import build_spark_session  # noqa: E402
from evcharging.resources.warehouse import WarehouseResource  # noqa: E402
from evcharging.settings import load_settings  # noqa: E402
from evcharging.warehouse.load import LoadReport, load_lake_commit, record_load  # noqa: E402
from evcharging.warehouse.schema import ensure_tables  # noqa: E402

DB = "bench"


def synthetic_events(spark, n: int, per_session: int, run_id: str, stations: int = 500):
    """``n`` lake rows: sessions of ``per_session`` events, one minute apart, spread over stations."""
    from pyspark.sql import functions as F

    i = F.col("id")
    session = F.floor(i / per_session)
    seq = (i % per_session).cast("long")
    session_id = F.concat(F.lit(f"{run_id}-s"), session.cast("string"))
    last = seq == per_session - 1
    event_time = F.timestamp_millis(F.lit(1767600000000) + (session % 1440) * 60_000 + seq * 60_000 + session % 997)
    station = F.format_string("EVS%05d", (session % stations + 1).cast("int"))
    df = spark.range(n).select(
        F.lit(CONTRACT_VERSION).cast("long").alias("contract_version"),
        F.concat(F.substring(F.sha2(session_id, 256), 1, 24), F.lpad(F.hex(seq), 8, "0")).alias("event_id"),
        F.when(seq == 0, "session_started").when(last, "session_ended").otherwise("charging_progress").alias("event_type"),
        F.lit(run_id).alias("run_id"), session_id.alias("session_id"), seq.alias("seq"), event_time.alias("event_time"),
        station.alias("station_id"), F.concat(station, F.lit("-1")).alias("charger_id"),
        F.format_string("V%06d", (session % 5000).cast("int")).alias("vehicle_id"),
        F.lit("tesla-model-3").alias("vehicle_model_id"), F.lit("CCS").alias("connector_type"),
        (F.lit(50.0) - seq).alias("power_kw"), (seq * 0.8).alias("energy_kwh"),
        F.least(F.lit(20.0) + seq, F.lit(100.0)).alias("soc_pct"), F.lit(12.5).alias("wait_s"),
        F.when(last, "target_soc").alias("end_reason"),
        (session % 4).cast("int").alias("kafka_partition"), i.alias("kafka_offset"))
    return df.withColumn("event_date", F.to_date("event_time"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--events-per-session", type=int, default=20)
    parser.add_argument("--keep-branch", action="store_true")
    args = parser.parse_args()

    settings = load_settings()
    lakefs = lakefs_resource(settings)
    spark = build_spark_session(settings, "bench-warehouse")
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    branch = lakefs.repo().branch(f"bench-warehouse-{run_id}").create(source_reference=lakefs.default_branch)
    tmp = Path(tempfile.mkdtemp(prefix="bench-warehouse-"))
    try:
        base = branch.get_commit().id
        started = time.perf_counter()
        synthetic_events(spark, args.events, args.events_per_session, run_id).write.mode("append").partitionBy("event_date") \
            .parquet(lakefs.s3a_uri(branch.id, LAKE_EVENTS_PATH))
        commit = branch.commit(message=f"bench: {args.events} events").get_commit().id
        print(f"wrote {args.events:,} events to {branch.id}@{commit[:12]} in {time.perf_counter() - started:.1f} s")

        warehouse = WarehouseResource(chdb_path=str(tmp / "warehouse"), database=DB)
        with warehouse.connect() as wh:
            ensure_tables(wh, DB)
            record_load(wh, DB, LoadReport(base, None, 0, 0, 0, 0))  # only the bench's files are new
            started = time.perf_counter()
            report = load_lake_commit(wh, DB, spark, lakefs, commit)
            load_s = time.perf_counter() - started

        raw = WarehouseResource(chdb_path=str(tmp / "raw"), database=DB)
        endpoint = settings.lakefs_endpoint.rstrip("/")
        url = f"{endpoint}/{settings.lakefs_repository}/{commit}/{LAKE_EVENTS_PATH}/**/*.parquet"
        with raw.connect() as wh:
            source = f"s3('{url}', '{lakefs.access_key_id}', '{lakefs.secret_access_key}', 'Parquet')"
            wh.command(f"CREATE TABLE {DB}.raw ENGINE = MergeTree ORDER BY tuple() AS SELECT * FROM {source} LIMIT 0")
            started = time.perf_counter()
            wh.command(f"INSERT INTO {DB}.raw SELECT * FROM {source}")
            raw_s = time.perf_counter() - started
            raw_rows = int(wh.query_rows(f"SELECT count() FROM {DB}.raw")[0][0])
    finally:
        if not args.keep_branch:
            branch.delete()
        shutil.rmtree(tmp, ignore_errors=True)
        spark.stop()

    load_rate, raw_rate = report.events_loaded / load_s, raw_rows / raw_s
    print(f"warehouse load : {report.events_loaded:>10,} events + {report.sessions_loaded:,} sessions "
          f"from {report.files} files in {load_s:6.2f} s = {load_rate:>10,.0f} rows/s")
    print(f"chDB raw ingest: {raw_rows:>10,} rows in {raw_s:6.2f} s = {raw_rate:>10,.0f} rows/s")
    print(f"ratio          : {load_rate / raw_rate:.0%} of raw ingest (target >= 50 %)")


if __name__ == "__main__":
    main()
