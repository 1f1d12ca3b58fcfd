"""Resources built directly from settings, for code outside Dagster (the stack, the stream, tests).

Inside Dagster, ``evcharging/defs/resources.py`` binds the same classes with secrets as ``EnvVar``.
"""

from __future__ import annotations

from evcharging.resources.kafka import KafkaResource
from evcharging.resources.lakefs import LakeFSResource
from evcharging.resources.mongo import MongoResource
from evcharging.resources.spark import SparkResource, spark_config
from evcharging.resources.warehouse import WarehouseResource
from evcharging.settings import Settings


def lakefs_resource(s: Settings) -> LakeFSResource:
    return LakeFSResource(endpoint=s.lakefs_endpoint, access_key_id=s.require("lakefs_access_key_id"),
                          secret_access_key=s.require("lakefs_secret_access_key"), repository=s.lakefs_repository,
                          default_branch=s.lakefs_default_branch)


def kafka_resource(s: Settings) -> KafkaResource:
    return KafkaResource(bootstrap_servers=s.kafka_bootstrap_servers, events_topic=s.kafka_events_topic,
                         manifests_topic=s.kafka_manifests_topic, events_partitions=s.kafka_events_partitions,
                         events_retention_hours=s.kafka_events_retention_hours)


def minio_s3_client(s: Settings):
    """A boto3 S3 client on MinIO itself (not through lakeFS)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=s.minio_endpoint, aws_access_key_id=s.minio_root_user,
                        aws_secret_access_key=s.require("minio_root_password"), region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))


def scratch_repository(s: Settings, name: str) -> LakeFSResource:
    """A lakeFS repository of its own (tests, benchmarks), created in the project's bucket."""
    lakefs = lakefs_resource(s).with_repository(name)
    lakefs.ensure_repository(f"s3://{s.minio_bucket}/{name}")
    return lakefs


def drop_repository(s: Settings, lakefs: LakeFSResource) -> None:
    """Delete a repository and its objects in MinIO (lakeFS deleting a repository keeps them)."""
    lakefs.repo().delete()
    s3 = minio_s3_client(s)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s.minio_bucket, Prefix=f"{lakefs.repository}/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=s.minio_bucket, Delete={"Objects": keys})


def warehouse_resource(s: Settings) -> WarehouseResource:
    return WarehouseResource(clickhouse_url=s.clickhouse_url, chdb_path=str(s.chdb_dir), database=s.clickhouse_database,
                             lakefs_endpoint=s.clickhouse_lakefs_endpoint)


def mongo_resource(s: Settings) -> MongoResource:
    return MongoResource(url=s.mongo_url, database=s.mongo_database)


def spark_resource(s: Settings) -> SparkResource:
    return SparkResource(spark_config=spark_config(s), lakefs_access_key_id=s.require("lakefs_access_key_id"),
                         lakefs_secret_access_key=s.require("lakefs_secret_access_key"), cache_dir=str(s.cache_dir))


def resources(s: Settings) -> dict:
    """Every resource the definitions bind, by key, from ``s`` (tests and scripts outside `dagster dev`)."""
    return {"lakefs": lakefs_resource(s), "kafka": kafka_resource(s), "mongo": mongo_resource(s),
            "warehouse": warehouse_resource(s), "spark": spark_resource(s)}
