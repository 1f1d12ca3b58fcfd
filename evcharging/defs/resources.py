"""One resource per external system, bound from settings (secrets through ``EnvVar``)."""

import dagster as dg

from evcharging.resources.kafka import KafkaResource
from evcharging.resources.lakefs import LakeFSResource
from evcharging.resources.mongo import MongoResource
from evcharging.resources.spark import SparkResource, spark_config
from evcharging.resources.warehouse import WarehouseResource
from evcharging.settings import ENV_PREFIX, load_settings


def _secret(name: str) -> dg.EnvVar:
    return dg.EnvVar(f"{ENV_PREFIX}{name.upper()}")


@dg.definitions
def resources() -> dg.Definitions:
    s = load_settings()  # also exports the local stack's generated secrets into the environment
    return dg.Definitions(resources={
        "lakefs": LakeFSResource(endpoint=s.lakefs_endpoint, access_key_id=_secret("lakefs_access_key_id"),
                                 secret_access_key=_secret("lakefs_secret_access_key"),
                                 repository=s.lakefs_repository, default_branch=s.lakefs_default_branch),
        "kafka": KafkaResource(bootstrap_servers=s.kafka_bootstrap_servers, events_topic=s.kafka_events_topic,
                               manifests_topic=s.kafka_manifests_topic, events_partitions=s.kafka_events_partitions,
                               events_retention_hours=s.kafka_events_retention_hours),
        "mongo": MongoResource(url=s.mongo_url, database=s.mongo_database),
        "warehouse": WarehouseResource(clickhouse_url=_secret("clickhouse_url") if s.clickhouse_url else None,
                                       chdb_path=str(s.chdb_dir), database=s.clickhouse_database),
        "spark": SparkResource(spark_config=spark_config(s), lakefs_access_key_id=_secret("lakefs_access_key_id"),
                               lakefs_secret_access_key=_secret("lakefs_secret_access_key"),
                               cache_dir=str(s.cache_dir)),
    })
