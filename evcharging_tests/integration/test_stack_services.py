"""Each service of the native local stack really works, through the clients the project uses.

Kafka (aiokafka produce/consume), lakeFS (SDK and lakefs-spec: branch, upload, commit with
metadata, diff, merge) with the merged bytes visible in MinIO's own S3 API and its metadata in
PostgreSQL, FerretDB through PyMongo's async client (including the patched many-upserts deadlock),
Spark from Kafka into a lakeFS branch through the S3 gateway, the warehouse resource on chDB, and
the Dagster definitions.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from evcharging.settings import PROJECT_DIR
from evcharging.resources.kafka import create_topics
from evcharging.resources.from_settings import kafka_resource, lakefs_resource, minio_s3_client
from evcharging.stack import stack
from evcharging.stack.services import LAKEFS_DATABASE

pytestmark = pytest.mark.integration


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(topic, value=value, key=str(i % 3).encode())
        await producer.flush()
    finally:
        await producer.stop()


def test_kafka_produce_and_consume(stack_settings, unique_name):
    from aiokafka import AIOKafkaConsumer

    topic = f"test-{unique_name}"
    values = [f"event-{i}".encode() for i in range(50)]

    async def scenario() -> list[bytes]:
        await create_topics(stack_settings.kafka_bootstrap_servers, {topic: 2})
        await _produce(stack_settings.kafka_bootstrap_servers, topic, values)
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack_settings.kafka_bootstrap_servers,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        seen = []
        try:
            while len(seen) < len(values):
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                seen += [m.value for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()
        return seen

    assert sorted(asyncio.run(scenario())) == sorted(values)


def test_kafka_project_topics_exist(stack_settings):
    # ensure_topics is idempotent: after `stack up` there is nothing left to create.
    assert asyncio.run(kafka_resource(stack_settings).ensure_topics()) == []


def test_lakefs_branch_commit_diff_merge_and_bytes_in_minio(stack_settings, unique_name):
    lakefs = lakefs_resource(stack_settings)
    repo = lakefs.repo()
    main = repo.branch("main")
    branch = repo.branch(f"test-{unique_name}").create(source_reference="main")
    payload = f"hello from {unique_name}\n".encode()
    path = f"tests/{unique_name}/hello.txt"

    branch.object(path).upload(data=payload, mode="wb")
    commit = branch.commit(message="test upload", metadata={"test": unique_name, "rows": "1"})
    assert commit.get_commit().metadata == {"test": unique_name, "rows": "1"}

    changes = list(main.diff(other_ref=branch, prefix=f"tests/{unique_name}/"))
    assert [(c.path, c.type) for c in changes] == [(path, "added")]

    branch.merge_into(main)
    assert main.object(path).reader(mode="rb").read() == payload

    # lakeFS keeps the bytes in MinIO: read them with MinIO's own S3 API at the physical address.
    physical = main.object(path).stat().physical_address  # s3://<bucket>/<key>
    bucket, key = physical.removeprefix("s3://").split("/", 1)
    assert bucket == stack_settings.minio_bucket
    body = minio_s3_client(stack_settings).get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == payload
    branch.delete()


def test_lakefs_keeps_its_metadata_in_postgres(stack_settings, unique_name):
    """The stack's lakeFS runs on its PostgreSQL (as compose does), set up once by ``initialise``."""
    lakefs_service = stack.service(stack_settings, "lakefs")
    if lakefs_service._local_kv(stack_settings):
        pytest.skip("this stack's lakeFS predates PostgreSQL and keeps its local KV (a fresh stack never does)")
    assert lakefs_resource(stack_settings).ensure_admin(stack_settings.lakefs_admin_user) is False  # already set up
    branch = f"test-{unique_name}"
    lakefs_resource(stack_settings).repo().branch(branch).create(source_reference="main")
    postgres = stack.service(stack_settings, "postgres")
    found = f"SELECT count(*) FROM kv WHERE position('{branch}'::bytea in key) > 0"
    assert postgres.psql(stack_settings, found, database=LAKEFS_DATABASE) == "1"
    lakefs_resource(stack_settings).repo().branch(branch).delete()
    assert postgres.psql(stack_settings, found, database=LAKEFS_DATABASE) == "0"


def test_lakefs_spec_filesystem_roundtrip(stack_settings, unique_name):
    lakefs = lakefs_resource(stack_settings)
    fs = lakefs.filesystem()
    branch = f"spec-{unique_name}"
    lakefs.repo().branch(branch).create(source_reference="main")
    path = f"{stack_settings.lakefs_repository}/{branch}/spec/{unique_name}.csv"
    fs.pipe(path, b"a,b\n1,2\n")
    assert fs.cat(path) == b"a,b\n1,2\n"
    assert path in fs.ls(f"{stack_settings.lakefs_repository}/{branch}/spec/", detail=False)
    lakefs.repo().branch(branch).delete()


def test_ferretdb_insert_find_upsert_aggregate(stack_settings, unique_name):
    from pymongo import AsyncMongoClient, UpdateOne

    async def scenario():
        client = AsyncMongoClient(stack_settings.mongo_url, serverSelectionTimeoutMS=5000)
        try:
            coll = client[f"test_{unique_name}"]["stations"]
            await coll.insert_many([{"_id": f"S{i}", "city": "Berlin" if i % 2 else "Seoul", "spots": i}
                                    for i in range(10)])
            found = await coll.find({"city": "Berlin"}).sort("_id").to_list()
            await coll.update_one({"_id": "S0"}, {"$set": {"spots": 100}}, upsert=True)
            await coll.update_one({"_id": "S99"}, {"$set": {"city": "Seoul", "spots": 1}}, upsert=True)
            groups = await (await coll.aggregate(
                [{"$group": {"_id": "$city", "spots": {"$sum": "$spots"}}}, {"$sort": {"_id": 1}}])).to_list()
            # The FerretDB patch: a command with many upserts of existing documents used to deadlock.
            many = [UpdateOne({"_id": f"M{i}"}, {"$set": {"v": i}}, upsert=True) for i in range(5000)]
            first = await coll.bulk_write(many, ordered=False)
            second = await coll.bulk_write(many, ordered=False)
            count = await coll.count_documents({})
            await client.drop_database(f"test_{unique_name}")
            return found, groups, first, second, count
        finally:
            await client.close()

    found, groups, first, second, count = asyncio.run(asyncio.wait_for(scenario(), 300))
    assert [d["_id"] for d in found] == ["S1", "S3", "S5", "S7", "S9"]
    assert groups == [{"_id": "Berlin", "spots": 25}, {"_id": "Seoul", "spots": 100 + 2 + 4 + 6 + 8 + 1}]
    assert first.upserted_count == 5000
    assert second.matched_count == 5000 and second.upserted_count == 0
    assert count == 11 + 5000


def test_spark_reads_kafka_and_writes_parquet_into_lakefs_branch(stack_settings, spark, unique_name):
    topic = f"spark-{unique_name}"
    asyncio.run(create_topics(stack_settings.kafka_bootstrap_servers, {topic: 2}))
    asyncio.run(_produce(stack_settings.kafka_bootstrap_servers, topic, [f'{{"n": {i}}}'.encode() for i in range(200)]))

    lakefs = lakefs_resource(stack_settings)
    branch = f"spark-{unique_name}"
    lakefs.repo().branch(branch).create(source_reference="main")
    frame = (spark.read.format("kafka")
             .option("kafka.bootstrap.servers", stack_settings.kafka_bootstrap_servers)
             .option("subscribe", topic).option("startingOffsets", "earliest").load()
             .selectExpr("CAST(value AS STRING) AS value", "partition", "offset"))
    target = lakefs.s3a_uri(branch, "spark-test")
    frame.write.mode("overwrite").parquet(target)

    objects = [o.path for o in lakefs.repo().branch(branch).objects(prefix="spark-test/")]
    assert any(p.endswith(".parquet") for p in objects), objects
    assert spark.read.parquet(target).count() == 200
    lakefs.repo().branch(branch).delete()


def test_warehouse_replacing_merge_tree(tmp_path):
    import pyarrow as pa

    from evcharging.resources.warehouse import WarehouseResource

    warehouse = WarehouseResource(chdb_path=str(tmp_path / "chdb"), database="wh_test")
    with warehouse.connect() as wh:
        wh.command("CREATE TABLE wh_test.t (id UInt32, v String, version UInt32) "
                   "ENGINE = ReplacingMergeTree(version) ORDER BY id")
        wh.insert_arrow("wh_test.t", pa.table({"id": [1, 2], "v": ["a", "b"], "version": [1, 1]}))
        wh.insert_arrow("wh_test.t", pa.table({"id": [2], "v": ["b2"], "version": [2]}))
        rows = wh.query_rows("SELECT id, v FROM wh_test.t FINAL ORDER BY id")
    assert rows == [(1, "a"), (2, "b2")]
    # The session was closed: a second connection (as the next Dagster step would open) works.
    with warehouse.connect() as wh:
        assert wh.query_rows("SELECT count() FROM wh_test.t FINAL") == [(2,)]


def test_dagster_definitions_validate():
    result = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
