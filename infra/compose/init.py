"""One-shot initialisation of a deployment (the compose `init` service), idempotent.

Creates what the pipeline expects to exist, with the same code the native local stack runs after
`evcharging stack up`: the Kafka topics, the MinIO bucket, lakeFS's admin (on first start) and
repository (stored in that bucket) and the ClickHouse database. Everything comes from the
EVCHARGING_* settings; a step whose service is managed elsewhere can be skipped with
INIT_SKIP=minio,kafka,…
Each step retries for a bounded time, then fails with the step's name.

    python /app/infra/compose/init.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable

from evcharging.settings import Settings, load_settings

ATTEMPTS = int(os.environ.get("INIT_ATTEMPTS", "10"))
DELAY_S = 3.0


def minio_bucket(s: Settings) -> str:
    from evcharging.resources.from_settings import minio_s3_client

    client = minio_s3_client(s)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    said = []
    for bucket in (s.minio_bucket, s.minio_checkpoint_bucket):  # lakeFS's objects; the stream's checkpoints
        if bucket in existing:
            said.append(f"bucket {bucket} exists")
        else:
            client.create_bucket(Bucket=bucket)
            said.append(f"bucket {bucket} created")
    return ", ".join(said)


def lakefs_repository(s: Settings) -> str:
    from evcharging.resources.from_settings import lakefs_resource

    lakefs = lakefs_resource(s)
    admin = f"admin {s.lakefs_admin_user} set up, " if lakefs.ensure_admin(s.lakefs_admin_user) else ""
    lakefs.ensure_repository(f"s3://{s.minio_bucket}/{s.lakefs_repository}")
    return f"{admin}repository {s.lakefs_repository} ready"


def kafka_topics(s: Settings) -> str:
    from evcharging.resources.from_settings import kafka_resource

    topics = asyncio.run(kafka_resource(s).ensure_topics())
    return f"topics created: {', '.join(sorted(topics))}" if topics else "topics exist"


def clickhouse_database(s: Settings) -> str:
    if not s.clickhouse_url:
        return "no EVCHARGING_CLICKHOUSE_URL: embedded chDB creates its database on first use"
    from evcharging.resources.warehouse import WarehouseResource

    with WarehouseResource(clickhouse_url=s.clickhouse_url, database=s.clickhouse_database).connect():
        pass  # connect() runs CREATE DATABASE IF NOT EXISTS
    return f"database {s.clickhouse_database} ready"


# Order matters: lakeFS stores the repository in the bucket.
STEPS: dict[str, Callable[[Settings], str]] = {
    "minio": minio_bucket,
    "lakefs": lakefs_repository,
    "kafka": kafka_topics,
    "clickhouse": clickhouse_database,
}


def main() -> int:
    settings = load_settings()
    skip = {name.strip() for name in os.environ.get("INIT_SKIP", "").split(",") if name.strip()}
    for name, step in STEPS.items():
        if name in skip:
            print(f"init {name}: skipped (INIT_SKIP)", flush=True)
            continue
        for attempt in range(1, ATTEMPTS + 1):
            try:
                print(f"init {name}: {step(settings)}", flush=True)
                break
            except Exception as err:  # noqa: BLE001 - any failure is retried, then reported
                if attempt == ATTEMPTS:
                    print(f"init {name}: FAILED after {attempt} attempts: {type(err).__name__}: {err}",
                          file=sys.stderr, flush=True)
                    return 1
                time.sleep(DELAY_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
