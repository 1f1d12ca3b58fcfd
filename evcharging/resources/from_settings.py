"""The one place that builds the project's resources from settings.

The Dagster definitions (``evcharging/defs/resources.py``), the CLI, the stream, benchmarks and
tests all call these factories, so a setting reaches the same resource field everywhere
(``evcharging_tests/resources/test_from_settings.py`` checks it against every setting compose sets).

``secrets_as_env=True`` is how Dagster binds them: each secret becomes a ``dg.EnvVar`` naming its
``EVCHARGING_*`` variable, so the UI shows the variable's name, never its value, and a run resolves
it from its own environment. Without it, the secret's value is passed (code outside Dagster).
"""

from __future__ import annotations

import dagster as dg

from evcharging.resources.kafka import KafkaResource
from evcharging.resources.lakefs import LakeFSResource
from evcharging.resources.mongo import MongoResource
from evcharging.resources.simulator import SimulatorResource
from evcharging.resources.spark import SparkResource, spark_config
from evcharging.resources.warehouse import WarehouseResource
from evcharging.settings import ENV_PREFIX, Settings


def _secret(s: Settings, name: str, as_env: bool):
    """A secret setting: its ``EnvVar`` (Dagster resolves it when a run starts, so loading the definitions
    needs no secret) or its value (everything else; one clear error naming the variable if unset)."""
    return dg.EnvVar(f"{ENV_PREFIX}{name.upper()}") if as_env else s.require(name)


def lakefs_resource(s: Settings, secrets_as_env: bool = False) -> LakeFSResource:
    return LakeFSResource(endpoint=s.lakefs_endpoint,
                          access_key_id=_secret(s, "lakefs_access_key_id", secrets_as_env),
                          secret_access_key=_secret(s, "lakefs_secret_access_key", secrets_as_env),
                          repository=s.lakefs_repository, default_branch=s.lakefs_default_branch)


def kafka_resource(s: Settings) -> KafkaResource:
    return KafkaResource(bootstrap_servers=s.kafka_bootstrap_servers, events_topic=s.kafka_events_topic,
                         manifests_topic=s.kafka_manifests_topic, events_partitions=s.kafka_events_partitions,
                         events_retention_hours=s.kafka_events_retention_hours,
                         replication_factor=s.kafka_replicas)


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


def warehouse_resource(s: Settings, secrets_as_env: bool = False) -> WarehouseResource:
    # The URL carries the server's password: a secret when set; unset means the embedded chDB.
    url = _secret(s, "clickhouse_url", secrets_as_env) if s.clickhouse_url else None
    return WarehouseResource(clickhouse_url=url, chdb_path=str(s.chdb_dir), database=s.clickhouse_database,
                             lakefs_endpoint=s.clickhouse_lakefs_endpoint)


def mongo_resource(s: Settings) -> MongoResource:
    return MongoResource(url=s.mongo_url, database=s.mongo_database)


def spark_resource(s: Settings, secrets_as_env: bool = False) -> SparkResource:
    return SparkResource(spark_config=spark_config(s),
                         lakefs_access_key_id=_secret(s, "lakefs_access_key_id", secrets_as_env),
                         lakefs_secret_access_key=_secret(s, "lakefs_secret_access_key", secrets_as_env),
                         cache_dir=str(s.cache_dir))


def simulator_resource(s: Settings) -> SimulatorResource:
    return SimulatorResource(docker_image=s.simulator_docker_image, docker_network=s.simulator_docker_network)


def resources(s: Settings, secrets_as_env: bool = False) -> dict:
    """Every resource the definitions bind, by key (``secrets_as_env=True``: as Dagster binds them)."""
    return {"lakefs": lakefs_resource(s, secrets_as_env), "kafka": kafka_resource(s), "mongo": mongo_resource(s),
            "warehouse": warehouse_resource(s, secrets_as_env), "spark": spark_resource(s, secrets_as_env),
            "simulator": simulator_resource(s)}
